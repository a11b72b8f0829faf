package main

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/naming/endpoints"
)

// runPublish publishes endpoints of `target` with etcd's naming endpoints API:
//
//	add ADDR TTL [METADATA_JSON]  grant a lease, keep it alive, add the endpoint on it
//	update ADDR METADATA_JSON     add again on the same lease (metadata changes)
//	delete ADDR                   delete the endpoint
//	revoke ADDR                   revoke its lease (etcd deletes the key)
func runPublish(client *clientv3.Client, target string) {
	manager, err := endpoints.NewManager(client, target)
	if err != nil {
		panic(err)
	}
	leases := map[string]clientv3.LeaseID{}
	deadline, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// One deadline for every request of the session: the test is short.
	ctx := func() context.Context {
		return deadline
	}
	metadata := func(fields []string, at int) interface{} {
		if len(fields) <= at {
			return nil
		}
		var m interface{}
		if err := json.Unmarshal([]byte(fields[at]), &m); err != nil {
			return fields[at]
		}
		return m
	}
	fmt := func(err error) string {
		if err != nil {
			return "error: " + err.Error()
		}
		return "ok"
	}
	lines(func(fields []string) string {
		if len(fields) < 2 {
			return "error: usage"
		}
		addr := fields[1]
		key := target + "/" + addr
		switch fields[0] {
		case "add":
			ttl, err := strconv.Atoi(fields[2])
			if err != nil {
				return "error: ttl"
			}
			lease, err := client.Grant(ctx(), int64(ttl))
			if err != nil {
				return fmt(err)
			}
			if _, err := client.KeepAlive(context.Background(), lease.ID); err != nil {
				return fmt(err)
			}
			leases[addr] = lease.ID
			return fmt(manager.AddEndpoint(ctx(), key, endpoints.Endpoint{Addr: addr, Metadata: metadata(fields, 3)}, clientv3.WithLease(lease.ID)))
		case "update":
			return fmt(manager.AddEndpoint(ctx(), key, endpoints.Endpoint{Addr: addr, Metadata: metadata(fields, 2)}, clientv3.WithLease(leases[addr])))
		case "delete":
			return fmt(manager.DeleteEndpoint(ctx(), key))
		case "revoke":
			_, err := client.Revoke(ctx(), leases[addr])
			return fmt(err)
		}
		return "error: unknown command " + fields[0]
	})
}
