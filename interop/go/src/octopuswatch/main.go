// octopuswatch: the Go peer of the propagation scenario
// (octopus-etcd-load/benches/etcd_load.rs, "propagation"): W watchers of PREFIX on one
// clientv3 client (clientv3 multiplexes them on one watch stream). For every
// put each watcher sees, it prints "seen ID NANOS": ID is the key's last
// segment, NANOS the wall-clock Unix time in nanoseconds when the watch
// response arrived (the harness, on the same machine, subtracts the time it
// sent the put). It prints "ready" once every watch is created; then, for each
// line "report" on stdin, the sightings since the last report and "end". It runs
// until stdin closes.
//
//	octopuswatch ENDPOINT PREFIX W
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: octopuswatch ENDPOINT PREFIX W")
		os.Exit(2)
	}
	endpoint, prefix := os.Args[1], os.Args[2]
	w, _ := strconv.Atoi(os.Args[3])
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	// Sightings are kept in memory while the puts run: a watcher's report is an
	// append under a short lock, and no I/O. Each "report" line on stdin writes
	// the lines gathered since the last, then "end" (watch_client does the same).
	var out sync.Mutex
	var lines []string
	ctx := context.Background()
	for i := 0; i < w; i++ {
		ch := cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		<-ch // created
		go func() {
			for resp := range ch {
				now := time.Now().UnixNano()
				for _, ev := range resp.Events {
					if ev.Type != clientv3.EventTypePut {
						continue
					}
					key := string(ev.Kv.Key)
					id := key[strings.LastIndex(key, "/")+1:]
					line := fmt.Sprintf("seen %s %d\n", id, now)
					out.Lock()
					lines = append(lines, line)
					out.Unlock()
				}
			}
		}()
	}
	writer := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(writer, "ready")
	writer.Flush()
	stdin := bufio.NewScanner(os.Stdin)
	for stdin.Scan() {
		out.Lock()
		batch := lines
		lines = nil
		out.Unlock()
		for _, line := range batch {
			writer.WriteString(line)
		}
		fmt.Fprintln(writer, "end")
		writer.Flush()
	}
	cli.Close()
}
