//! The `/api` and the security rules, against a console on a `mem://` registry.

mod common;

use common::{console, get_json, request, until, Events};
use octopus::ServiceInstance;
use octopus_console::{ConsoleOptions, Token};

const TOKEN: &str = "correct-horse-battery-staple";
const XSS: &str = "<img src=x onerror=alert(1)>";

fn instance(service: &str, id: &str, port: u16) -> ServiceInstance {
    ServiceInstance::new(service, id, "127.0.0.1", port)
        .unwrap()
        .with_version("v1")
        .with_metadata("zone", "eu-1")
}

async fn draining(client: &octopus::Client, service: &str, id: &str) -> bool {
    let entry = client.inspector().entry(service, id).await.unwrap().unwrap();
    entry.instance.unwrap().is_draining()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_services_instances_and_their_timeline() {
    let c = console("api-list", ConsoleOptions::default()).await;
    let _a = c.client.register(instance("users", "u1", 1)).await.unwrap();
    let _b = c
        .client
        .register(instance("users", "u2", 2).with_version("v2"))
        .await
        .unwrap();
    let _o = c.client.register(instance("orders", "o1", 3)).await.unwrap();
    let services = until("both services listed", || async {
        let v = get_json(c.addr, "/api/services").await;
        (v["services"].as_array()?.len() == 2 && v["services"][1]["instances"] == 2).then_some(v)
    })
    .await;
    assert_eq!(services["services"][0]["name"], "orders");
    let users = &services["services"][1];
    assert_eq!(users["name"], "users");
    assert_eq!(users["serving"], 2);
    assert_eq!(users["versions"], serde_json::json!(["v1", "v2"]));
    assert_eq!(users["zones"], serde_json::json!(["eu-1"]));

    let detail = get_json(c.addr, "/api/services/users").await;
    let rows = detail["instances"].as_array().unwrap();
    assert_eq!(rows[0]["id"], "u1");
    assert_eq!(rows[0]["endpoint"], "127.0.0.1:1");
    assert_eq!(rows[0]["state"], "serving");
    assert!(rows[0]["create_revision"].as_i64().unwrap() > 0);
    // Registered before the console's first read: in the state, not the timeline.
    let bad = request(c.addr, "GET", "/api/services/no%20such", &[], "").await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("service"), "{}", bad.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_names_every_kind_with_its_revision() {
    let c = console("api-timeline", ConsoleOptions::default().writes(true)).await;
    let mut events = Events::open(c.addr, &[]).await;
    events.next("hello").await;
    let reg = c.client.register(instance("pay", "p1", 1)).await.unwrap();
    let update = events.next("update").await;
    assert_eq!(update["timeline"][0]["kind"], "registered");
    assert_eq!(update["instances"][0]["row"]["state"], "serving");
    let registered_at = update["timeline"][0]["revision"].as_i64().unwrap();
    assert!(registered_at > 0);

    c.client.inspector().set_draining("pay", "p1", true).await.unwrap();
    let update = events.next("update").await;
    assert_eq!(update["timeline"][0]["kind"], "drained");
    assert_eq!(update["services"][0]["summary"]["draining"], 1);
    let diff = &update["timeline"][0]["diff"];
    assert!(diff
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["field"] == "state" && d["before"] == "serving" && d["after"] == "draining"));

    c.client.inspector().set_draining("pay", "p1", false).await.unwrap();
    assert_eq!(events.next("update").await["timeline"][0]["kind"], "undrained");

    reg.deregister().await.unwrap();
    let update = events.next("update").await;
    assert_eq!(update["timeline"][0]["kind"], "deregistered");
    assert_eq!(update["services"][0]["summary"], serde_json::Value::Null);

    // A crash: the lease (1 s) runs out once the console has read it.
    let crashed = c.client.register(instance("pay", "p1", 1)).await.unwrap();
    assert_eq!(events.next("update").await["timeline"][0]["kind"], "re-registered");
    until("the lease read", || async {
        let v = get_json(c.addr, "/api/services/pay").await;
        v["instances"][0]["ttl_ms"].as_u64().map(|_| ())
    })
    .await;
    crashed.abandon().await;
    let update = events.next("update").await;
    assert_eq!(update["timeline"][0]["kind"], "expired", "{update}");

    let timeline = get_json(c.addr, "/api/services/pay/timeline").await;
    let kinds: Vec<&str> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "expired",
            "re-registered",
            "deregistered",
            "undrained",
            "drained",
            "registered"
        ]
    );
    let revisions: Vec<i64> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["revision"].as_i64().unwrap())
        .collect();
    assert!(revisions.windows(2).all(|w| w[0] > w[1]), "{revisions:?}");
    assert_eq!(*revisions.last().unwrap(), registered_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused() {
    let c = console("api-host", ConsoleOptions::default()).await;
    let _r = c.client.register(instance("users", "u1", 1)).await.unwrap();
    until("listed", || async {
        (get_json(c.addr, "/api/services").await["services"].as_array()?.len() == 1).then_some(())
    })
    .await;
    for host in [
        "evil.example",
        "evil.example:80",
        &format!("attacker.test:{}", c.addr.port()),
    ] {
        for path in ["/", "/app.js", "/api/services", "/api/events"] {
            let reply = request(c.addr, "GET", path, &[("Host", host)], "").await;
            assert_eq!(reply.status, 421, "{host} {path}");
            assert!(!reply.body.contains("users"), "{}", reply.body);
        }
    }
    let port = c.addr.port().to_string();
    for host in [format!("localhost:{port}"), format!("[::1]:{port}"), c.addr.to_string()] {
        assert_eq!(
            request(c.addr, "GET", "/api/services", &[("Host", &host)], "")
                .await
                .status,
            200,
            "{host}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_token_and_a_same_origin_json_request() {
    let options = ConsoleOptions::default().writes(true).token(Token::new(TOKEN).unwrap());
    let c = console("api-token", options).await;
    let _r = c.client.register(instance("users", "u1", 1)).await.unwrap();
    let drain = "/api/services/users/instances/u1/drain";
    let json = ("Content-Type", "application/json");

    // No token: refused, nothing changes (reads are refused too).
    let reply = request(c.addr, "POST", drain, &[json], "{}").await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(request(c.addr, "GET", "/api/services", &[], "").await.status, 401);
    let reply = request(c.addr, "DELETE", "/api/services/users/instances/u1", &[json], "{}").await;
    assert_eq!(reply.status, 401);
    let wrong = format!("{}-not", TOKEN);
    let bearer = format!("Bearer {wrong}");
    assert_eq!(
        request(c.addr, "POST", drain, &[json, ("Authorization", &bearer)], "{}")
            .await
            .status,
        401
    );
    let reply = request(
        c.addr,
        "POST",
        "/api/session",
        &[json],
        &format!("{{\"token\":\"{wrong}\"}}"),
    )
    .await;
    assert_eq!(reply.status, 401);
    assert!(reply.header("set-cookie").is_none());
    assert!(!reply.body.contains(TOKEN));
    assert!(!draining(&c.client, "users", "u1").await);
    assert!(c.client.inspector().entry("users", "u1").await.unwrap().is_some());

    // The token buys an HttpOnly, SameSite=Strict cookie, which works.
    let reply = request(
        c.addr,
        "POST",
        "/api/session",
        &[json],
        &format!("{{\"token\":\"{TOKEN}\"}}"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let set = reply.header("set-cookie").unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    assert!(!set.contains(TOKEN), "the cookie is not the token");
    let cookie = set.split(';').next().unwrap().to_owned();

    // Cross-site, or not JSON: refused even with the cookie.
    let evil = ("Origin", "http://evil.example");
    let reply = request(c.addr, "POST", drain, &[json, ("Cookie", &cookie), evil], "{}").await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    let site = ("Sec-Fetch-Site", "cross-site");
    assert_eq!(
        request(c.addr, "POST", drain, &[json, ("Cookie", &cookie), site], "{}")
            .await
            .status,
        403
    );
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    assert_eq!(
        request(c.addr, "POST", drain, &[form, ("Cookie", &cookie)], "")
            .await
            .status,
        415
    );
    assert!(!draining(&c.client, "users", "u1").await);

    let origin = format!("http://{}", c.addr);
    let own = [
        json,
        ("Cookie", cookie.as_str()),
        ("Origin", origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let reply = request(c.addr, "POST", drain, &own, "{}").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(draining(&c.client, "users", "u1").await);
    let reply = request(c.addr, "POST", "/api/services/users/instances/u1/undrain", &own, "{}").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(!draining(&c.client, "users", "u1").await);
    let missing = request(c.addr, "POST", "/api/services/users/instances/nobody/drain", &own, "{}").await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    let bearer = format!("Bearer {TOKEN}");
    let reply = request(
        c.addr,
        "DELETE",
        "/api/services/users/instances/u1",
        &[json, ("Authorization", &bearer)],
        "{}",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(c.client.inspector().entry("users", "u1").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_by_default() {
    let c = console("api-readonly", ConsoleOptions::default()).await;
    let _r = c.client.register(instance("users", "u1", 1)).await.unwrap();
    let json = ("Content-Type", "application/json");
    let reply = request(c.addr, "POST", "/api/services/users/instances/u1/drain", &[json], "{}").await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains("--writes"), "{}", reply.body);
    assert_eq!(
        request(c.addr, "DELETE", "/api/services/users/instances/u1", &[json], "{}")
            .await
            .status,
        403
    );
    assert!(!draining(&c.client, "users", "u1").await);
    let session = get_json(c.addr, "/api/session").await;
    assert_eq!(session["writes"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrant_html_is_served_as_data_under_a_strict_policy() {
    let c = console("api-xss", ConsoleOptions::default()).await;
    let evil = ServiceInstance::new("users", "u1", "127.0.0.1", 1)
        .unwrap()
        .with_metadata("note", XSS)
        .with_version("<script>alert(2)</script>");
    let _r = c.client.register(evil).await.unwrap();
    let reply = until("listed", || async {
        let r = request(c.addr, "GET", "/api/services/users", &[], "").await;
        r.body.contains("onerror").then_some(r)
    })
    .await;
    assert!(reply.header("content-type").unwrap().starts_with("application/json"));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.json()["instances"][0]["metadata"][0][1], XSS);

    let page = request(c.addr, "GET", "/", &[], "").await;
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    // No inline script: every <script> has a src and no body.
    for script in page.body.split("<script").skip(1) {
        assert!(script.trim_start().starts_with("src=\"/app.js\""), "{script}");
        assert!(script.split('>').nth(1).unwrap().starts_with("</script"), "{script}");
    }
    // The page writes data as text only.
    let js = request(c.addr, "GET", "/app.js", &[], "").await.body;
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    ] {
        assert!(!js.contains(sink), "app.js uses {sink}");
    }
}
