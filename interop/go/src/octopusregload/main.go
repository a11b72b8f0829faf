// octopusregload: the Go peers of the registration scenario
// (octopus-etcd-load/benches/etcd_load.rs, "register"): N registrations, INFLIGHT at a
// time, on one clientv3 client, each keeping its lease alive, as Go services
// register:
//
//	kratos:  grant + put (with the lease) + KeepAlive, as go-kratos's etcd registry
//	manager: grant + endpoints.Manager.AddEndpoint (with the lease) + KeepAlive
//
// It prints "done SECONDS CPU_SECONDS" (wall time from the first grant to the
// last write, and this process's CPU over it), then waits for stdin to close.
//
//	octopusregload ENDPOINT MODE N INFLIGHT TTL_SECONDS
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/naming/endpoints"
)

func cpu() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func fail(what string, err error) {
	fmt.Fprintln(os.Stderr, what+":", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: octopusregload ENDPOINT kratos|manager N INFLIGHT TTL_SECONDS")
		os.Exit(2)
	}
	endpoint, mode := os.Args[1], os.Args[2]
	n, _ := strconv.Atoi(os.Args[3])
	inflight, _ := strconv.Atoi(os.Args[4])
	ttl, _ := strconv.ParseInt(os.Args[5], 10, 64)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		fail("connect", err)
	}
	ctx := context.Background()
	if _, err := cli.Get(ctx, "warm-up"); err != nil {
		fail("warm-up", err)
	}
	managers := map[string]endpoints.Manager{}
	if mode == "manager" {
		for s := 0; s < 100; s++ {
			target := fmt.Sprintf("/octopus/services/svc%03d", s)
			m, err := endpoints.NewManager(cli, target)
			if err != nil {
				fail("manager", err)
			}
			managers[target] = m
		}
	}
	start, cpu0 := time.Now(), cpu()
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < inflight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				lease, err := cli.Grant(ctx, ttl)
				if err != nil {
					fail("grant", err)
				}
				target := fmt.Sprintf("/octopus/services/svc%03d", i%100)
				id := fmt.Sprintf("instance-%d", i)
				addr := fmt.Sprintf("127.0.0.1:%d", 10000+i%50000)
				switch mode {
				case "kratos":
					value := fmt.Sprintf(`{"id":%q,"name":"svc%03d","version":"","metadata":null,"endpoints":["grpc://%s"]}`, id, i%100, addr)
					if _, err := cli.Put(ctx, target+"/"+id, value, clientv3.WithLease(lease.ID)); err != nil {
						fail("put", err)
					}
				case "manager":
					ep := endpoints.Endpoint{Addr: addr}
					if err := managers[target].AddEndpoint(ctx, target+"/"+id, ep, clientv3.WithLease(lease.ID)); err != nil {
						fail("add endpoint", err)
					}
				default:
					fmt.Fprintln(os.Stderr, "unknown mode", mode)
					os.Exit(2)
				}
				ka, err := cli.KeepAlive(ctx, lease.ID)
				if err != nil {
					fail("keepalive", err)
				}
				go func() {
					for range ka {
					}
				}()
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	fmt.Printf("done %.6f %.6f\n", time.Since(start).Seconds(), cpu()-cpu0)
	bufio.NewReader(os.Stdin).ReadString('\n')
	cli.Close()
}
