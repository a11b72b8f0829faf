//! A differential test: the same generated request sequences sent through
//! etcd-client to a real etcd 3.5 and to `MemEtcd` (the mem store behind
//! `octopus dev` and the simulator), answers compared modulo revisions' origin,
//! lease ids and timing. proptest generates and shrinks the sequences: a
//! difference is reported as the shortest sequence that shows it.
//!
//! Where MemEtcd departs from etcd on purpose, the generator does not go
//! (docs/RELIABILITY.md lists each with why): nested transactions, lease expiry
//! timing, authentication, several members.
//!
//! `OCTOPUS_DIFF_CASES` sets the number of cases (default 2,000).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, LeaseTimeToLiveOptions, PutOptions, SortOrder, SortTarget,
    Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use octopus_devserver::{MemEtcd, MemEtcdOptions};
use octopus_mem::Store;
use octopus_testkit::etcd::EtcdServer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const KEYS: [&str; 5] = ["a", "b", "b/1", "b/2", "c"];
const VALUES: [&str; 3] = ["", "x", "y"];

#[derive(Clone, Debug)]
enum End {
    /// The key alone.
    Key,
    /// Every key with the key as prefix.
    Prefix,
    /// Up to (not including) another key of the set; an end before the key is
    /// an empty range.
    To(usize),
}

#[derive(Clone, Debug)]
struct Range {
    key: usize,
    end: End,
    limit: i64,
    sort: Option<(i32, i32)>,
    keys_only: bool,
    count_only: bool,
    /// Revisions back from the latest (0: the latest).
    back: i64,
    filter: Option<(u8, i64)>,
}

#[derive(Clone, Debug)]
enum Step {
    Put {
        key: usize,
        value: usize,
        lease: Option<usize>,
        prev_kv: bool,
    },
    Get(Range),
    Delete {
        key: usize,
        end: End,
        prev_kv: bool,
    },
    Txn {
        compares: Vec<(usize, End, u8, u8, i64, usize)>,
        success: Vec<Step>,
        failure: Vec<Step>,
    },
    Grant(i64),
    Revoke(usize),
    TimeToLive(usize),
    Compact(i64),
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![
        3 => Just(End::Key),
        2 => Just(End::Prefix),
        1 => (0..KEYS.len()).prop_map(End::To),
    ]
}

fn range() -> impl Strategy<Value = Range> {
    (
        0..KEYS.len(),
        end(),
        prop_oneof![3 => Just(0i64), 1 => 1..4i64],
        prop::option::of((0..6i32, 0..3i32)),
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop_oneof![3 => Just(0i64), 1 => 1..6i64],
        prop::option::weighted(0.2, (0..4u8, 0..12i64)),
    )
        .prop_map(|(key, end, limit, sort, keys_only, count_only, back, filter)| Range {
            key,
            end,
            limit,
            sort,
            keys_only,
            count_only,
            back,
            filter,
        })
}

/// Puts, gets and deletes: what a transaction's branches hold.
fn simple() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..KEYS.len(), 0..VALUES.len(), prop::option::weighted(0.3, 0..3usize), any::<bool>())
            .prop_map(|(key, value, lease, prev_kv)| Step::Put { key, value, lease, prev_kv }),
        2 => range().prop_map(Step::Get),
        1 => (0..KEYS.len(), end(), any::<bool>()).prop_map(|(key, end, prev_kv)| Step::Delete { key, end, prev_kv }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let compare = (0..KEYS.len(), end(), 0..5u8, 0..4u8, 0..12i64, 0..VALUES.len());
    prop_oneof![
        8 => simple(),
        3 => (
            prop::collection::vec(compare, 0..3),
            prop::collection::vec(simple(), 0..3),
            prop::collection::vec(simple(), 0..3),
        )
            .prop_map(|(compares, success, failure)| Step::Txn { compares, success, failure }),
        1 => (5..100i64).prop_map(Step::Grant),
        1 => (0..3usize).prop_map(Step::Revoke),
        1 => (0..3usize).prop_map(Step::TimeToLive),
        1 => (0..6i64).prop_map(Step::Compact),
    ]
}

/// One server as the test sees it: its client and what makes its answers
/// comparable (the revision the case started from, its leases by grant order).
struct Side {
    client: Client,
    prefix: String,
    base: i64,
    latest: i64,
    leases: Vec<i64>,
}

impl Side {
    fn key(&self, k: usize) -> String {
        format!("{}{}", self.prefix, KEYS[k])
    }

    fn end(&self, key: usize, end: &End) -> Option<Vec<u8>> {
        match end {
            End::Key => None,
            End::Prefix => Some(octopus_discovery_core::prefix_end(self.key(key).as_bytes())),
            End::To(other) => Some(self.key(*other).into_bytes()),
        }
    }

    fn rev(&self, r: i64) -> String {
        if r == 0 {
            "0".into()
        } else {
            format!("{:+}", r - self.base)
        }
    }

    fn lease(&self, id: i64) -> String {
        match self.leases.iter().position(|l| *l == id) {
            _ if id == 0 => "-".into(),
            Some(i) => format!("L{i}"),
            None => "L?".into(),
        }
    }

    fn lease_id(&self, n: usize) -> i64 {
        self.leases.get(n).copied().unwrap_or(0x7fff_0000 + n as i64)
    }

    fn kv(&self, kv: &etcd_client::KeyValue) -> String {
        format!(
            "{}={}(c{},m{},v{},{})",
            String::from_utf8_lossy(kv.key()).trim_start_matches(&self.prefix),
            String::from_utf8_lossy(kv.value()),
            self.rev(kv.create_revision()),
            self.rev(kv.mod_revision()),
            kv.version(),
            self.lease(kv.lease())
        )
    }

    fn note(&mut self, header: Option<&etcd_client::ResponseHeader>) -> String {
        let r = header.map_or(0, |h| h.revision());
        self.latest = self.latest.max(r);
        self.rev(r)
    }

    fn get_options(&self, r: &Range) -> GetOptions {
        let mut o = GetOptions::new();
        if let Some(end) = self.end(r.key, &r.end) {
            o = o.with_range(end);
        }
        if r.limit > 0 {
            o = o.with_limit(r.limit);
        }
        if let Some((target, order)) = r.sort {
            let target = [
                SortTarget::Key,
                SortTarget::Version,
                SortTarget::Create,
                SortTarget::Mod,
                SortTarget::Value,
                SortTarget::Key,
            ][target as usize];
            let order = [SortOrder::None, SortOrder::Ascend, SortOrder::Descend][order as usize];
            o = o.with_sort(target, order);
        }
        if r.keys_only {
            o = o.with_keys_only();
        }
        if r.count_only {
            o = o.with_count_only();
        }
        if r.back > 0 {
            o = o.with_revision((self.latest - r.back).max(self.base));
        }
        if let Some((which, at)) = r.filter {
            let at = self.base + at;
            o = match which {
                0 => o.with_min_mod_revision(at),
                1 => o.with_max_mod_revision(at),
                2 => o.with_min_create_revision(at),
                _ => o.with_max_create_revision(at),
            };
        }
        o
    }

    fn txn_op(&self, s: &Step) -> TxnOp {
        match s {
            Step::Put {
                key,
                value,
                lease,
                prev_kv,
            } => TxnOp::put(self.key(*key), VALUES[*value], Some(self.put_options(*lease, *prev_kv))),
            Step::Get(r) => TxnOp::get(self.key(r.key), Some(self.get_options(r))),
            Step::Delete { key, end, prev_kv } => {
                TxnOp::delete(self.key(*key), Some(self.delete_options(*key, end, *prev_kv)))
            }
            other => unreachable!("not in a transaction: {other:?}"),
        }
    }

    fn put_options(&self, lease: Option<usize>, prev_kv: bool) -> PutOptions {
        let mut o = PutOptions::new();
        if let Some(l) = lease {
            o = o.with_lease(self.lease_id(l));
        }
        if prev_kv {
            o = o.with_prev_key();
        }
        o
    }

    fn delete_options(&self, key: usize, end: &End, prev_kv: bool) -> DeleteOptions {
        let mut o = DeleteOptions::new();
        if let Some(end) = self.end(key, end) {
            o = o.with_range(end);
        }
        if prev_kv {
            o = o.with_prev_key();
        }
        o
    }

    fn get_answer(&mut self, r: &etcd_client::GetResponse) -> String {
        let h = self.note(r.header());
        let kvs: Vec<String> = r.kvs().iter().map(|kv| self.kv(kv)).collect();
        format!("@{h} count={} more={} [{}]", r.count(), r.more(), kvs.join(" "))
    }

    async fn revoke_all(&mut self) {
        for lease in std::mem::take(&mut self.leases) {
            let _ = self.client.lease_client().revoke(lease).await;
        }
    }

    async fn run(&mut self, s: &Step) -> String {
        let mut kv = self.client.kv_client();
        let answer = match s {
            Step::Put {
                key,
                value,
                lease,
                prev_kv,
            } => match kv
                .put(self.key(*key), VALUES[*value], Some(self.put_options(*lease, *prev_kv)))
                .await
            {
                Ok(r) => format!("@{} prev={:?}", self.note(r.header()), r.prev_key().map(|p| self.kv(p))),
                Err(e) => error(e),
            },
            Step::Get(range) => match kv.get(self.key(range.key), Some(self.get_options(range))).await {
                Ok(r) => self.get_answer(&r),
                Err(e) => error(e),
            },
            Step::Delete { key, end, prev_kv } => {
                match kv
                    .delete(self.key(*key), Some(self.delete_options(*key, end, *prev_kv)))
                    .await
                {
                    Ok(r) => {
                        let prev: Vec<String> = r.prev_kvs().iter().map(|p| self.kv(p)).collect();
                        format!("@{} deleted={} prev={prev:?}", self.note(r.header()), r.deleted())
                    }
                    Err(e) => error(e),
                }
            }
            Step::Txn {
                compares,
                success,
                failure,
            } => {
                let compares: Vec<Compare> = compares
                    .iter()
                    .map(|(key, end, target, op, n, value)| {
                        let k = self.key(*key);
                        let op = [
                            CompareOp::Equal,
                            CompareOp::NotEqual,
                            CompareOp::Less,
                            CompareOp::Greater,
                        ][*op as usize];
                        let at = self.base + n;
                        let c = match target {
                            0 => Compare::value(k, op, VALUES[*value]),
                            1 => Compare::version(k, op, *n),
                            2 => Compare::create_revision(k, op, if *n == 0 { 0 } else { at }),
                            3 => Compare::mod_revision(k, op, if *n == 0 { 0 } else { at }),
                            _ => Compare::lease(k, op, if *n % 3 == 0 { 0 } else { self.lease_id(*n as usize % 3) }),
                        };
                        match self.end(*key, end) {
                            Some(end) => c.with_range(end),
                            None => c,
                        }
                    })
                    .collect();
                let txn = Txn::new()
                    .when(compares)
                    .and_then(success.iter().map(|s| self.txn_op(s)).collect::<Vec<_>>())
                    .or_else(failure.iter().map(|s| self.txn_op(s)).collect::<Vec<_>>());
                match kv.txn(txn).await {
                    Ok(r) => {
                        let h = self.note(r.header());
                        let ops: Vec<String> = r
                            .op_responses()
                            .iter()
                            .map(|o| match o {
                                TxnOpResponse::Put(p) => format!("put prev={:?}", p.prev_key().map(|k| self.kv(k))),
                                TxnOpResponse::Get(g) => format!("get {}", self.get_answer(g)),
                                TxnOpResponse::Delete(d) => {
                                    let prev: Vec<String> = d.prev_kvs().iter().map(|p| self.kv(p)).collect();
                                    format!("delete {} {prev:?}", d.deleted())
                                }
                                TxnOpResponse::Txn(_) => "txn".into(),
                            })
                            .collect();
                        format!("@{h} succeeded={} {ops:?}", r.succeeded())
                    }
                    Err(e) => error(e),
                }
            }
            Step::Grant(ttl) => match self.client.lease_client().grant(*ttl, None).await {
                Ok(r) => {
                    self.leases.push(r.id());
                    format!("{} ttl={}", self.lease(r.id()), r.ttl())
                }
                Err(e) => error(e),
            },
            Step::Revoke(n) => match self.client.lease_client().revoke(self.lease_id(*n)).await {
                Ok(r) => format!("@{}", self.note(r.header())),
                Err(e) => error(e),
            },
            Step::TimeToLive(n) => {
                let options = LeaseTimeToLiveOptions::new().with_keys();
                match self
                    .client
                    .lease_client()
                    .time_to_live(self.lease_id(*n), Some(options))
                    .await
                {
                    Ok(r) => {
                        // Compared as a set: etcd lists a lease's keys by iterating a
                        // Go map (lessor's `Lease.Keys`), in no fixed order.
                        let mut keys: Vec<String> = r
                            .keys()
                            .iter()
                            .map(|k| String::from_utf8_lossy(k).trim_start_matches(&self.prefix).to_owned())
                            .collect();
                        keys.sort();
                        // etcd answers an unknown lease with TTL -1 rather than an error.
                        format!("granted={} alive={} keys={keys:?}", r.granted_ttl(), r.ttl() > 0)
                    }
                    Err(e) => error(e),
                }
            }
            Step::Compact(back) => {
                let at = (self.latest - back).max(self.base);
                match kv.compact(at, None).await {
                    Ok(_) => "compacted".into(),
                    Err(e) => error(e),
                }
            }
        };
        answer
    }
}

fn error(e: etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("error {:?}: {}", s.code(), s.message()),
        other => format!("error: {other}"),
    }
}

async fn side(endpoint: &str, prefix: &str) -> Side {
    let mut client = Client::connect([endpoint], None).await.unwrap();
    let base = client.status().await.unwrap().header().unwrap().revision();
    Side {
        client,
        prefix: prefix.to_owned(),
        base,
        latest: base,
        leases: Vec::new(),
    }
}

async fn mem_etcd() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = MemEtcd::new(Store::new(), MemEtcdOptions::default());
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
    addr
}

fn cases() -> u32 {
    std::env::var("OCTOPUS_DIFF_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

fn block_on<F: Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    rt.block_on(f)
}

#[test]
fn mem_etcd_answers_generated_requests_as_etcd_does() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (etcd, mem) = block_on(&rt, async {
        let etcd = EtcdServer::start().await;
        (etcd, mem_etcd().await)
    });
    let etcd_endpoint = etcd.endpoint();
    let mem_endpoint = format!("http://{mem}");
    let case = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(step(), 1..12), |steps| {
        let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        // Each case under a prefix of its own; both servers see the same writes in
        // the same order, so revisions relative to the case's start agree.
        let prefix = format!("/diff/{case:06}/");
        block_on(&rt, async {
            let mut real = side(&etcd_endpoint, &prefix).await;
            let mut ours = side(&mem_endpoint, &prefix).await;
            let mut outcome = Ok(());
            for (n, s) in steps.iter().enumerate() {
                let (a, b) = (real.run(s).await, ours.run(s).await);
                if a != b {
                    outcome = Err(TestCaseError::fail(format!(
                        "step {n} {s:?}\n  etcd:    {a}\n  MemEtcd: {b}"
                    )));
                    break;
                }
            }
            // A lease that expired later, deleting its keys, would move one server's
            // revisions in the middle of a later case: revoke them now, on both.
            real.revoke_all().await;
            ours.revoke_all().await;
            outcome
        })
    });
    if let Err(e) = result {
        panic!("MemEtcd differs from etcd 3.5 (shrunk to the shortest sequence):\n{e}");
    }
    println!("{} generated cases, no difference", case.into_inner());
}

/// Watches from past revisions with previous values: the events both servers
/// deliver for a sequence of writes, read until neither has more.
#[test]
fn watches_from_past_revisions_deliver_the_same_events() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (etcd, mem) = block_on(&rt, async {
        let etcd = EtcdServer::start().await;
        (etcd, mem_etcd().await)
    });
    let (etcd_endpoint, mem_endpoint) = (etcd.endpoint(), format!("http://{mem}"));
    let case = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases: (cases() / 10).max(20),
        failure_persistence: None,
        ..Config::default()
    });
    let writes = prop::collection::vec(simple(), 1..8);
    let watch = (0..KEYS.len(), end(), 0..8i64, any::<bool>());
    let result = runner.run(&(writes, watch), |(steps, (key, end, back, prev_kv))| {
        let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let prefix = format!("/watch/{case:06}/");
        block_on(&rt, async {
            let mut answers = Vec::new();
            for endpoint in [&etcd_endpoint, &mem_endpoint] {
                let mut s = side(endpoint, &prefix).await;
                for step in &steps {
                    s.run(step).await;
                }
                let mut options = WatchOptions::new().with_start_revision((s.latest - back).max(s.base + 1));
                if let Some(end) = s.end(key, &end) {
                    options = options.with_range(end);
                }
                if prev_kv {
                    options = options.with_prev_key();
                }
                let mut stream = s.client.watch(s.key(key), Some(options)).await.unwrap();
                s.revoke_all().await;
                let mut events = Vec::new();
                while let Ok(Ok(Some(r))) = tokio::time::timeout(Duration::from_millis(150), stream.message()).await {
                    for e in r.events() {
                        let kv = e.kv().map(|kv| s.kv(kv)).unwrap_or_default();
                        let prev = e.prev_kv().map(|kv| s.kv(kv));
                        events.push(format!("{:?} {kv} prev={prev:?}", e.event_type()));
                    }
                }
                answers.push(events);
            }
            if answers[0] != answers[1] {
                return Err(TestCaseError::fail(format!(
                    "etcd:    {:?}\n  MemEtcd: {:?}",
                    answers[0], answers[1]
                )));
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("MemEtcd's watch differs from etcd 3.5:\n{e}");
    }
    println!("{} generated watch cases, no difference", case.into_inner());
}
