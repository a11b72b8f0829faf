package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
)

// runScript runs one fixed workload through clientv3 and prints what etcd
// answered, one line a step, with revisions relative to the first write and
// lease ids as "L1", "L2"…: the same text from any server that answers as etcd.
func runScript(c *clientv3.Client) {
	ctx := context.Background()
	var base int64
	rev := func(r int64) string {
		if r == 0 {
			return "0"
		}
		return fmt.Sprintf("r%+d", r-base)
	}
	leaseNames := map[clientv3.LeaseID]string{0: "none"}
	lease := func(id clientv3.LeaseID) string {
		if _, ok := leaseNames[id]; !ok {
			leaseNames[id] = fmt.Sprintf("L%d", len(leaseNames))
		}
		return leaseNames[id]
	}
	kv := func(k *clientv3.GetResponse) string {
		var parts []string
		for _, x := range k.Kvs {
			parts = append(parts, fmt.Sprintf("%s=%s(c%s,m%s,v%d,%s)", x.Key, x.Value, rev(x.CreateRevision), rev(x.ModRevision), x.Version, lease(clientv3.LeaseID(x.Lease))))
		}
		return fmt.Sprintf("count=%d more=%v [%s]", k.Count, k.More, strings.Join(parts, " "))
	}
	step := func(name string, out string, err error) {
		if err != nil {
			// etcd's error text, without the server's own wording of the prefix.
			out = "error: " + err.Error()
		}
		fmt.Printf("%s: %s\n", name, out)
	}
	p := "/interop/"

	// KV
	r, err := c.Put(ctx, p+"a", "1")
	if err != nil {
		fmt.Println("put:", err)
		return
	}
	base = r.Header.Revision
	step("put a", rev(r.Header.Revision), nil)
	pr, err := c.Put(ctx, p+"a", "2", clientv3.WithPrevKV())
	step("put a prev", fmt.Sprintf("%s prev=%s", rev(pr.Header.Revision), pr.PrevKv.Value), err)
	for _, k := range []string{"b", "c", "d", "e"} {
		_, err := c.Put(ctx, p+k, k+k)
		step("put "+k, "", err)
	}
	g, err := c.Get(ctx, p+"a")
	step("get a", kv(g), err)
	g, err = c.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithLimit(2))
	step("get prefix limit 2", kv(g), err)
	g, err = c.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(3))
	step("get prefix desc limit 3", kv(g), err)
	g, err = c.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
	step("get prefix count", kv(g), err)
	g, err = c.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortAscend))
	step("get prefix keys by mod", kv(g), err)
	g, err = c.Get(ctx, p+"a", clientv3.WithRev(base))
	step("get a at base", kv(g), err)
	g, err = c.Get(ctx, p+"b", clientv3.WithRange(p+"d"))
	step("get range b..d", kv(g), err)
	g, err = c.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithMinModRev(base+3))
	step("get min mod rev", kv(g), err)
	d, err := c.Delete(ctx, p+"e", clientv3.WithPrevKV())
	if err == nil {
		step("delete e", fmt.Sprintf("deleted=%d prev=%s", d.Deleted, d.PrevKvs[0].Value), nil)
	} else {
		step("delete e", "", err)
	}
	d, err = c.Delete(ctx, p+"zz")
	step("delete absent", fmt.Sprintf("deleted=%d", d.Deleted), err)

	// Txn
	t, err := c.Txn(ctx).If(clientv3.Compare(clientv3.Value(p+"a"), "=", "2")).Then(clientv3.OpPut(p+"t", "yes")).Else(clientv3.OpGet(p+"a")).Commit()
	step("txn value a = 2", fmt.Sprintf("succeeded=%v", t.Succeeded), err)
	t, err = c.Txn(ctx).If(clientv3.Compare(clientv3.Value(p+"absent"), "=", "")).Then(clientv3.OpPut(p+"absent", "x")).Commit()
	step("txn value absent = \"\"", fmt.Sprintf("succeeded=%v", t.Succeeded), err)
	t, err = c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(p+"n"), "=", 0)).Then(clientv3.OpPut(p+"n", "new")).Commit()
	step("txn create n if absent", fmt.Sprintf("succeeded=%v", t.Succeeded), err)
	t, err = c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(p+"n"), "=", 0)).Then(clientv3.OpPut(p+"n", "again")).Else(clientv3.OpGet(p+"n")).Commit()
	if err == nil {
		step("txn create n again", fmt.Sprintf("succeeded=%v else=%s", t.Succeeded, t.Responses[0].GetResponseRange().Kvs[0].Value), nil)
	} else {
		step("txn create n again", "", err)
	}
	t, err = c.Txn(ctx).If(clientv3.Compare(clientv3.Version(p+"q/"), ">", 0).WithPrefix()).Then(clientv3.OpPut(p+"q", "x")).Commit()
	step("txn version over empty prefix > 0", fmt.Sprintf("succeeded=%v", t.Succeeded), err)
	t, err = c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(p+"b"), "<", base+100)).Then(clientv3.OpDelete(p+"b", clientv3.WithPrevKV())).Commit()
	step("txn mod b < big then delete", fmt.Sprintf("succeeded=%v", t.Succeeded), err)
	_, err = c.Txn(ctx).Then(clientv3.OpPut(p+"dup", "1"), clientv3.OpPut(p+"dup", "2")).Commit()
	step("txn duplicate key", "", err)

	// Leases
	l, err := c.Grant(ctx, 60)
	step("grant 60", fmt.Sprintf("%s ttl=%d", lease(l.ID), l.TTL), err)
	_, err = c.Put(ctx, p+"leased", "x", clientv3.WithLease(l.ID))
	step("put with lease", "", err)
	ttl, err := c.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
	if err == nil {
		var keys []string
		for _, k := range ttl.Keys {
			keys = append(keys, string(k))
		}
		step("time to live", fmt.Sprintf("granted=%d ttl>0=%v keys=%v", ttl.GrantedTTL, ttl.TTL > 0, keys), nil)
	} else {
		step("time to live", "", err)
	}
	ka, err := c.KeepAliveOnce(ctx, l.ID)
	step("keepalive once", fmt.Sprintf("ttl=%d", ka.TTL), err)
	ls, err := c.Leases(ctx)
	step("leases", fmt.Sprintf("%d", len(ls.Leases)), err)
	_, err = c.Revoke(ctx, l.ID)
	step("revoke", "", err)
	g, err = c.Get(ctx, p+"leased")
	step("leased key after revoke", kv(g), err)
	_, err = c.KeepAliveOnce(ctx, l.ID)
	step("keepalive revoked", "", err)
	_, err = c.Put(ctx, p+"x", "x", clientv3.WithLease(l.ID))
	step("put on revoked lease", "", err)

	// Watch with previous values
	wctx, cancel := context.WithCancel(ctx)
	wch := c.Watch(wctx, p+"w/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	time.Sleep(200 * time.Millisecond)
	c.Put(ctx, p+"w/1", "one")
	c.Put(ctx, p+"w/1", "uno")
	c.Delete(ctx, p+"w/1")
	var events []string
	for len(events) < 3 {
		select {
		case resp := <-wch:
			for _, e := range resp.Events {
				prev := "-"
				if e.PrevKv != nil {
					prev = string(e.PrevKv.Value)
				}
				events = append(events, fmt.Sprintf("%s %s=%s prev=%s m%s", e.Type, e.Kv.Key, e.Kv.Value, prev, rev(e.Kv.ModRevision)))
			}
		case <-time.After(5 * time.Second):
			events = append(events, "timeout")
		}
	}
	cancel()
	step("watch", strings.Join(events, "; "), nil)

	// Compaction
	now, _ := c.Get(ctx, p+"a")
	cr, err := c.Compact(ctx, now.Header.Revision)
	step("compact", fmt.Sprintf("ok=%v", cr != nil), err)
	_, err = c.Get(ctx, p+"a", clientv3.WithRev(base))
	step("get compacted revision", "", err)
	wctx, cancel = context.WithCancel(ctx)
	wresp := <-c.Watch(wctx, p, clientv3.WithPrefix(), clientv3.WithRev(base))
	cancel()
	step("watch from compacted", fmt.Sprintf("canceled=%v compact=%s err=%v", wresp.Canceled, rev(wresp.CompactRevision), wresp.Err()), nil)

	// concurrency: a mutex and an election on sessions (leases kept alive by the client)
	s1, err := concurrency.NewSession(c, concurrency.WithTTL(10))
	if err != nil {
		step("session", "", err)
		return
	}
	s2, _ := concurrency.NewSession(c, concurrency.WithTTL(10))
	m1, m2 := concurrency.NewMutex(s1, p+"lock"), concurrency.NewMutex(s2, p+"lock")
	step("lock 1", "", m1.Lock(ctx))
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	err = m2.Lock(short)
	cancelShort()
	step("lock 2 while held", fmt.Sprintf("blocked=%v", err == context.DeadlineExceeded), nil)
	step("unlock 1", "", m1.Unlock(ctx))
	step("lock 2", "", m2.Lock(ctx))
	step("unlock 2", "", m2.Unlock(ctx))

	e1, e2 := concurrency.NewElection(s1, p+"election"), concurrency.NewElection(s2, p+"election")
	step("campaign 1", "", e1.Campaign(ctx, "one"))
	leader, err := e1.Leader(ctx)
	if err == nil {
		step("leader", string(leader.Kvs[0].Value), nil)
	} else {
		step("leader", "", err)
	}
	won := make(chan error, 1)
	go func() { won <- e2.Campaign(ctx, "two") }()
	time.Sleep(300 * time.Millisecond)
	step("resign 1", "", e1.Resign(ctx))
	select {
	case err := <-won:
		step("campaign 2 after resign", "", err)
	case <-time.After(5 * time.Second):
		step("campaign 2 after resign", "timeout", nil)
	}
	leader, err = e2.Leader(ctx)
	if err == nil {
		step("leader", string(leader.Kvs[0].Value), nil)
	}
	s1.Close()
	s2.Close()
	g, err = c.Get(ctx, p+"election", clientv3.WithPrefix(), clientv3.WithCountOnly())
	step("election keys after sessions close", fmt.Sprintf("count=%d", g.Count), err)

	// Everything left, sorted, as a last check of the state.
	g, err = c.Get(ctx, p, clientv3.WithPrefix())
	if err == nil {
		var keys []string
		for _, x := range g.Kvs {
			keys = append(keys, fmt.Sprintf("%s=%s", x.Key, x.Value))
		}
		sort.Strings(keys)
		step("final", strings.Join(keys, " "), nil)
	}
}
