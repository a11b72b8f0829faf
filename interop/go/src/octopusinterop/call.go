package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	etcdresolver "go.etcd.io/etcd/clientv3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// rawCodec sends and receives protobuf bytes as they are: the test needs no
// generated Go code for the service's messages.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// helloRequest encodes {name: 1} by hand: field 1, length-delimited.
func helloRequest(name string) []byte {
	return append([]byte{0x0a, byte(len(name))}, name...)
}

// stringField reads string field `field` of a protobuf message (no nesting).
func stringField(msg []byte, field byte) string {
	for i := 0; i+1 < len(msg); {
		tag, n := msg[i], int(msg[i+1])
		i += 2
		if i+n > len(msg) {
			return ""
		}
		if tag == field<<3|2 {
			return string(msg[i : i+n])
		}
		i += n
	}
	return ""
}

// runCall dials etcd:///target through etcd's naming resolver with `policy`;
// each stdin line "N" makes N calls of `method` and answers
// "ok instance=count,… errors=N [code: message]".
func runCall(client *clientv3.Client, target, policy, method string) {
	builder, err := etcdresolver.NewBuilder(client)
	if err != nil {
		fmt.Fprintln(os.Stderr, "resolver:", err)
		os.Exit(1)
	}
	conn, err := grpc.Dial("etcd:///"+target,
		grpc.WithInsecure(),
		grpc.WithResolvers(builder),
		grpc.WithDefaultServiceConfig(fmt.Sprintf(`{"loadBalancingPolicy":%q}`, policy)),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	defer conn.Close()
	fmt.Println("ready")
	lines(func(fields []string) string {
		n, err := strconv.Atoi(fields[0])
		if err != nil {
			return "error: not a count: " + fields[0]
		}
		seen := map[string]int{}
		errors, last := 0, ""
		for i := 0; i < n; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			req, reply := helloRequest("go"), []byte(nil)
			err := conn.Invoke(ctx, method, &req, &reply, grpc.ForceCodec(rawCodec{}), grpc.WaitForReady(i == 0))
			cancel()
			if err != nil {
				errors++
				last = fmt.Sprintf("%s: %s", status.Code(err), status.Convert(err).Message())
				continue
			}
			seen[stringField(reply, 2)]++
		}
		var parts []string
		for id, count := range seen {
			parts = append(parts, fmt.Sprintf("%s=%d", id, count))
		}
		sort.Strings(parts)
		out := fmt.Sprintf("ok %s errors=%d", strings.Join(parts, ","), errors)
		if last != "" {
			out += " last=" + last
		}
		return out
	})
}
