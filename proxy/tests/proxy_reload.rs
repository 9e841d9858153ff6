//! SIGHUP reloads the recording rules (`--config`) of a running `kubecast
//! proxy`: sessions admitted afterwards follow the new rules; an invalid
//! file is logged and the previous rules stay. Real kubectl over
//! WebSocket; without it the test skips loudly, or fails when `CI` is set.

mod proxy_support;

use kubecast_tests::kubectl::{Kubectl, Transport};
use kubecast_tests::upstream::TestUpstream;
use proxy_support::*;

async fn echo(kubectl: &Kubectl) {
    let out = kubectl
        .run(
            Transport::WebSocket,
            &["exec", "demo", "--", "echo", "hi"],
            None,
        )
        .await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), "hi\n".into()),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_rules_and_keeps_them_when_the_file_is_invalid() {
    let upstream = TestUpstream::start().await;
    let dir = Scratch::create("reload");
    let casts_dir = dir.join("casts");
    let rules = dir.write(
        "rules.yaml",
        "rules:\n- pods: [\"demo\"]\n  record: false\n",
    );
    let url = upstream.url();
    let c = path_str(&casts_dir);
    let proxy = Proxy::start(&[
        "--auth",
        "noauth",
        "--upstream",
        &url,
        "--recordings-dir",
        &c,
        "--config",
        &rules,
    ]);
    let Some(kubectl) = Kubectl::for_server("reload", &proxy.http_url()) else {
        return;
    };

    // The first rules: pod demo is not recorded.
    echo(&kubectl).await;
    proxy
        .wait_log(&["raw relay, not recorded", "pod=\"demo\""])
        .await;
    assert!(casts(&casts_dir).is_empty());

    // New rules, then SIGHUP: recorded from now on.
    std::fs::write(&rules, "cluster: reloaded\nrules: []\n").unwrap();
    proxy.signal("HUP");
    proxy.wait_log(&["SIGHUP: recording rules reloaded"]).await;
    echo(&kubectl).await;
    proxy.wait_log(&["session ended (recorded)"]).await;
    wait_for_casts(&casts_dir, 1).await;

    // An invalid file: logged, and the reloaded rules stay.
    std::fs::write(&rules, "rules:\n- namespace: [x]\n").unwrap();
    proxy.signal("HUP");
    let line = proxy
        .wait_log(&["SIGHUP: the rules file is invalid; keeping the previous rules"])
        .await;
    assert!(line.contains("unknown field `namespace`"), "{line}");
    echo(&kubectl).await;
    let found = wait_for_casts(&casts_dir, 2).await;
    // The proxy logs a session's end after it has placed the cast: wait for
    // the line rather than read the log the moment the cast appears.
    let recorded = proxy
        .process
        .wait_log(&["session ended (recorded)"], 2)
        .await;
    assert_eq!(
        recorded.len(),
        2,
        "still recorded under the reloaded rules:\n{}",
        proxy.log_text()
    );
    for cast in found {
        let text = std::fs::read_to_string(cast).unwrap();
        let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(header["kubernetes"]["cluster"], "reloaded", "{header}");
    }
}
