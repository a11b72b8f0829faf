// Command octopusinterop drives etcd's own Go client (clientv3, its naming
// packages and concurrency) and grpc-go against Octopus: clients nobody in the
// Octopus project wrote. Built offline in GOPATH mode from Debian's packaged
// sources (golang-etcd-server-dev 3.4, golang-google-grpc-dev); the Rust tests in
// octopus-discovery-cli/tests/go.rs build and run it.
//
//	octopusinterop call    -etcd ADDR -target NAME -policy round_robin|pick_first -method /pkg.Svc/Hello
//	octopusinterop publish -etcd ADDR -target NAME
//	octopusinterop script  -etcd ADDR
//
// call and publish read commands from stdin, one a line, and answer one line
// each, so the test drives them step by step.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: octopusinterop call|publish|script [flags]")
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	etcd := fs.String("etcd", "127.0.0.1:2379", "etcd endpoint")
	target := fs.String("target", "", "the service name (etcd naming target)")
	policy := fs.String("policy", "round_robin", "grpc-go balancing policy")
	method := fs.String("method", "", "the gRPC method to call, /package.Service/Method")
	fs.Parse(args)

	client, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{*etcd},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		os.Exit(1)
	}
	defer client.Close()

	switch cmd {
	case "call":
		runCall(client, *target, *policy, *method)
	case "publish":
		runPublish(client, *target)
	case "script":
		runScript(client)
	default:
		fmt.Fprintln(os.Stderr, "unknown command", cmd)
		os.Exit(2)
	}
}

// lines calls handle for every line of stdin and prints its answer.
func lines(handle func(fields []string) string) {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fields := strings.Fields(in.Text())
		if len(fields) == 0 {
			continue
		}
		if fields[0] == "quit" {
			return
		}
		fmt.Println(handle(fields))
	}
}
