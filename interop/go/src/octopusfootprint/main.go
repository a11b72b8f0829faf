// octopusfootprint: the Go peer of the etcd footprint scenario
// (octopus-etcd-load/benches/footprint.rs). One process is one client, as a Go
// service on etcd's clientv3 would be: it registers `instances` instances
// (grant + put + KeepAlive, as go-kratos does) and watches `services`
// services (Get, then Watch from the revision after, on the client's one
// Watcher), prints "ready", and runs until its stdin closes.
//
//	octopusfootprint ENDPOINT CLIENT SERVICES INSTANCES
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: octopusfootprint ENDPOINT CLIENT SERVICES INSTANCES")
		os.Exit(2)
	}
	endpoint, client := os.Args[1], os.Args[2]
	services, _ := strconv.Atoi(os.Args[3])
	instances, _ := strconv.Atoi(os.Args[4])
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	for i := 0; i < instances; i++ {
		lease, err := cli.Grant(ctx, 10)
		if err != nil {
			fmt.Fprintln(os.Stderr, "grant:", err)
			os.Exit(1)
		}
		// The key and value Octopus writes for the same instance, byte for
		// byte in length (its JSON layout, with the write's wall-clock stamp),
		// so that the two sides differ only in how they use etcd.
		key := fmt.Sprintf("/footprint/services/svc-%d/%s-%d", i%services, client, i)
		value := fmt.Sprintf(`{"service":"svc-%d","id":"%s-%d","addr":"127.0.0.1","port":%d,"version":"","metadata":{},"weight":100,"written_at_ms":%d}`,
			i%services, client, i, 20000+i, time.Now().UnixMilli())
		if _, err := cli.Put(ctx, key, value, clientv3.WithLease(lease.ID)); err != nil {
			fmt.Fprintln(os.Stderr, "put:", err)
			os.Exit(1)
		}
		ka, err := cli.KeepAlive(ctx, lease.ID)
		if err != nil {
			fmt.Fprintln(os.Stderr, "keepalive:", err)
			os.Exit(1)
		}
		go func() {
			for range ka {
			}
		}()
	}
	for s := 0; s < services; s++ {
		prefix := fmt.Sprintf("/footprint/services/svc-%d/", s)
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			fmt.Fprintln(os.Stderr, "get:", err)
			os.Exit(1)
		}
		ch := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1), clientv3.WithPrevKV())
		go func() {
			for range ch {
			}
		}()
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	cli.Close()
}
