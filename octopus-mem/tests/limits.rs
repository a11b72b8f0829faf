//! Where etcd 3.5 answers a request in a way that is easy to get wrong, the store
//! answers the same (each case was seen from etcd's own Go client against a real
//! etcd and against `octopus dev`: octopus-discovery-cli/tests/go.rs).

use octopus_mem::{Compare, CompareOp, CompareTarget, Error, KeyRange, Op, Store, MAX_REQUEST_BYTES, MAX_TXN_OPS};

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.into(),
        lease: 0,
    }
}

fn compare(range: KeyRange, target: CompareTarget, op: CompareOp) -> Compare {
    Compare { range, op, target }
}

#[test]
fn a_value_compare_on_an_absent_key_fails_other_targets_compare_zero() {
    let store = Store::new();
    let absent = || KeyRange::key("/absent");
    // python-etcd3's replace(key, b"", b"x") on a key that does not exist: false on etcd.
    let r = store
        .txn(
            &[compare(absent(), CompareTarget::Value(Vec::new()), CompareOp::Equal)],
            &[put("/absent", "x")],
            &[],
        )
        .unwrap();
    assert!(!r.succeeded);
    assert_eq!(store.len(), 0, "nothing written");
    // create_revision == 0 is how "create if absent" is written: true.
    let r = store
        .txn(
            &[compare(absent(), CompareTarget::Create(0), CompareOp::Equal)],
            &[],
            &[],
        )
        .unwrap();
    assert!(r.succeeded);
    // Over an empty range the zero key-value is compared: version > 0 is false.
    let r = store
        .txn(
            &[compare(
                KeyRange::prefix("/empty/"),
                CompareTarget::Version(0),
                CompareOp::Greater,
            )],
            &[],
            &[],
        )
        .unwrap();
    assert!(!r.succeeded);
    let r = store
        .txn(
            &[compare(
                KeyRange::prefix("/empty/"),
                CompareTarget::Version(0),
                CompareOp::Equal,
            )],
            &[],
            &[],
        )
        .unwrap();
    assert!(r.succeeded);
    let r = store
        .txn(
            &[compare(
                KeyRange::prefix("/empty/"),
                CompareTarget::Value(Vec::new()),
                CompareOp::Equal,
            )],
            &[],
            &[],
        )
        .unwrap();
    assert!(!r.succeeded);
    // A present key compares as before.
    store.put(b"/k", b"v", 0).unwrap();
    let r = store
        .txn(
            &[compare(
                KeyRange::key("/k"),
                CompareTarget::Value(b"v".to_vec()),
                CompareOp::Equal,
            )],
            &[],
            &[],
        )
        .unwrap();
    assert!(r.succeeded);
}

#[test]
fn etcds_request_limits() {
    let store = Store::new();
    let e = store.txn(&[], &[put("/d", "1"), put("/d", "2")], &[]).unwrap_err();
    assert!(matches!(e, Error::DuplicateKey { .. }), "{e}");
    let e = store
        .txn(&[], &[], &[Op::Delete(KeyRange::prefix("/p/")), put("/p/x", "1")])
        .unwrap_err();
    assert!(
        matches!(e, Error::DuplicateKey { .. }),
        "a put inside a deleted range: {e}"
    );
    // Two deletes may overlap, and one key may be written in each branch.
    store
        .txn(
            &[],
            &[Op::Delete(KeyRange::prefix("/p/")), Op::Delete(KeyRange::key("/p/x"))],
            &[],
        )
        .unwrap();
    store.txn(&[], &[put("/b", "1")], &[put("/b", "2")]).unwrap();

    let many: Vec<Op> = (0..=MAX_TXN_OPS).map(|i| put(&format!("/m/{i}"), "x")).collect();
    let e = store.txn(&[], &many, &[]).unwrap_err();
    assert!(matches!(e, Error::TooManyOps { count: 129, max: 128 }), "{e}");
    store.txn(&[], &many[..MAX_TXN_OPS], &[]).unwrap();

    let big = "x".repeat(MAX_REQUEST_BYTES);
    let e = store.put(b"/big", big.as_bytes(), 0).unwrap_err();
    assert!(matches!(e, Error::RequestTooLarge { .. }), "{e}");
    store
        .put(b"/big", &big.as_bytes()[..MAX_REQUEST_BYTES - 10], 0)
        .unwrap();
}
