//! `kubecast recorder`, v2: h2c `HEAD`/`POST /v2/record` with ack frames.

mod recorder_support;

use bytes::Bytes;
use recorder_support::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn v2_upload_in_pieces_is_acked_and_stored_exactly() {
    let server = Server::start("v2-pieces", &[]);
    let mut h2 = H2::h2c(server.addr).await;
    assert_eq!(h2.head(None).await, 200);

    let data = cast("default", "web-0", "alice", 200);
    let (tx, res) = h2.post(None).await;
    assert_eq!(res.status(), 200);
    let mut frames = Frames::new(res.into_body());
    let mut acks = Vec::new();
    let mut sent = 0u64;
    // Pieces that split the header line and events at odd places.
    for piece in data.chunks(data.len() / 5 + 7) {
        tx.send(Bytes::copy_from_slice(piece)).await.unwrap();
        sent += piece.len() as u64;
        // Each piece is acked promptly.
        let t = Instant::now();
        acks.extend(frames.until_ack(sent).await);
        assert!(t.elapsed() < Duration::from_secs(1), "slow ack");
    }
    drop(tx);
    let rest = frames.rest().await;
    for f in &rest {
        acks.push(
            f["ack"]
                .as_u64()
                .unwrap_or_else(|| panic!("not an ack: {f}")),
        );
    }
    assert!(
        acks.windows(2).all(|w| w[0] <= w[1]),
        "acks not monotone: {acks:?}"
    );
    assert_eq!(*acks.last().unwrap(), data.len() as u64);

    let name = format!("{}.cast", stem("default", "web-0", "alice"));
    eventually("the complete file", || {
        server.files().contains(&name).then_some(())
    })
    .await;
    assert_eq!(server.read(&name), data);
    assert_eq!(server.files(), vec![name]);
    assert!(
        server.hidden().is_empty(),
        "temporary files left: {:?}",
        server.hidden()
    );
    let line = &server.wait_log("v2 complete", 1).await[0];
    assert!(
        line.contains("user=\"alice\"") && line.contains(&format!("bytes={}", data.len())),
        "{line}"
    );
}

#[tokio::test]
async fn v2_idle_upload_still_gets_an_ack_every_second() {
    let server = Server::start("v2-idle", &[]);
    let mut h2 = H2::h2c(server.addr).await;
    let data = cast("ns", "pod", "bob", 3);
    let (tx, res) = h2.post(None).await;
    let mut frames = Frames::new(res.into_body());
    tx.send(Bytes::from(data.clone())).await.unwrap();
    frames.until_ack(data.len() as u64).await;

    // Idle for 3.5 s: acks keep coming, never more than 1 s apart.
    let start = Instant::now();
    let mut last = start;
    let mut count = 0;
    while start.elapsed() < Duration::from_millis(3500) {
        let frame = frames.next().await.expect("stream ended");
        assert_eq!(frame["ack"].as_u64(), Some(data.len() as u64), "{frame}");
        let gap = last.elapsed();
        assert!(gap <= Duration::from_secs(1), "ack gap {gap:?}");
        last = Instant::now();
        count += 1;
    }
    assert!(count >= 3, "only {count} acks in 3.5 s");
    drop(tx);
    let rest = frames.rest().await;
    assert_eq!(
        rest.last().unwrap()["ack"].as_u64(),
        Some(data.len() as u64)
    );
    let name = format!("{}.cast", stem("ns", "pod", "bob"));
    eventually("the file", || server.files().contains(&name).then_some(())).await;
    assert_eq!(server.read(&name), data);
}

#[tokio::test]
async fn v2_rejects_a_first_line_that_is_not_an_asciicast_v2_header() {
    let server = Server::start("v2-reject", &[]);
    let mut h2 = H2::h2c(server.addr).await;
    for body in [
        &b"hello world\n[0.1, \"o\", \"x\"]\n"[..],
        br#"{"version":3,"term":{"cols":80,"rows":24}}
"#,
        br#"{"version":2,"width":"wide","height":24}
"#,
        b"",
    ] {
        let (tx, res) = h2.post(None).await;
        assert_eq!(res.status(), 200);
        let mut frames = Frames::new(res.into_body());
        if !body.is_empty() {
            tx.send(Bytes::copy_from_slice(body)).await.unwrap();
        }
        drop(tx);
        let rest = frames.rest().await;
        let last = rest.last().expect("an error frame");
        let error = last["error"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error: {last}"));
        assert!(
            error.contains("asciicast") || error.contains("empty"),
            "{error}"
        );
    }
    // A first line longer than 64 KiB is refused without waiting for its end.
    let (tx, res) = h2.post(None).await;
    let mut frames = Frames::new(res.into_body());
    let mut long = b"{\"version\":2,\"width\":80,\"height\":24,\"title\":\"".to_vec();
    long.resize(70 * 1024, b'x');
    tx.send(Bytes::from(long)).await.unwrap();
    let rest = frames.rest().await;
    assert!(rest.last().unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("longer than"));
    drop(tx);

    server.wait_log("v2 rejected", 5).await;
    assert!(server.files().is_empty(), "{:?}", server.files());
    assert!(server.hidden().is_empty(), "{:?}", server.hidden());
}

#[tokio::test]
async fn v2_header_line_must_arrive_within_the_header_timeout() {
    let server = Server::start("v2-header-timeout", &["--header-timeout", "0.5"]);
    let mut h2 = H2::h2c(server.addr).await;
    let (tx, res) = h2.post(None).await;
    let mut frames = Frames::new(res.into_body());
    tx.send(Bytes::from_static(b"{\"version\":2,"))
        .await
        .unwrap();
    let rest = frames.rest().await;
    let error = rest.last().unwrap()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("header line"), "{error}");
    // Every frame before it was an ack.
    assert!(rest[..rest.len() - 1]
        .iter()
        .all(|f| f.get("ack").is_some()));
    assert!(server.files().is_empty());
}

#[tokio::test]
async fn v2_size_limit_keeps_what_fits_as_incomplete() {
    let server = Server::start("v2-limit", &["--max-recording-bytes", "1000"]);
    let mut h2 = H2::h2c(server.addr).await;
    let data = cast("default", "big", "carol", 200);
    assert!(data.len() > 3000);
    let (tx, res) = h2.post(None).await;
    let mut frames = Frames::new(res.into_body());
    for piece in data.chunks(300) {
        if tx.send(Bytes::copy_from_slice(piece)).await.is_err() {
            break;
        }
    }
    let rest = frames.rest().await;
    let error = rest.last().unwrap()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("limit of 1000 bytes"), "{error}");
    drop(tx);
    let name = format!("{}_incomplete.cast", stem("default", "big", "carol"));
    eventually("the incomplete file", || {
        server.files().contains(&name).then_some(())
    })
    .await;
    assert_eq!(server.read(&name), &data[..1000]);
}

#[tokio::test]
async fn v2_upload_cut_mid_way_is_kept_as_incomplete() {
    let server = Server::start("v2-cut", &[]);
    let mut h2 = H2::h2c(server.addr).await;
    let data = cast("prod", "db-0", "mallory", 20);
    let (tx, res) = h2.post(None).await;
    let mut frames = Frames::new(res.into_body());
    let half = data.len() / 2;
    tx.send(Bytes::copy_from_slice(&data[..half]))
        .await
        .unwrap();
    frames.until_ack(half as u64).await;
    // The uploader vanishes: its connection is dropped without ending the body.
    h2.conn.abort();
    drop(h2);
    drop(frames);
    drop(tx);
    let name = format!("{}_incomplete.cast", stem("prod", "db-0", "mallory"));
    eventually("the incomplete file", || {
        server.files().contains(&name).then_some(())
    })
    .await;
    assert_eq!(server.read(&name), &data[..half]);
    server.wait_log("v2 incomplete", 1).await;
    assert!(server.hidden().is_empty());
}

#[tokio::test]
async fn v2_bearer_token_is_required_when_configured() {
    let scratch = Scratch::create("v2-token-file");
    let token_file = scratch.join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let server = Server::start("v2-token", &["--token-file", token_file.to_str().unwrap()]);
    let mut h2 = H2::h2c(server.addr).await;
    assert_eq!(h2.head(None).await, 401);
    assert_eq!(h2.head(Some("wrong")).await, 401);
    assert_eq!(h2.head(Some("s3cret-token")).await, 200);

    let data = cast("ns", "pod", "dave", 2);
    for token in [None, Some("wrong"), Some("s3cret-token-but-longer")] {
        let (tx, res) = h2.post(token).await;
        assert_eq!(res.status(), 401, "token {token:?}");
        let _ = tx.send(Bytes::from(data.clone())).await;
    }
    let (tx, res) = h2.post(Some("s3cret-token")).await;
    assert_eq!(res.status(), 200);
    let mut frames = Frames::new(res.into_body());
    tx.send(Bytes::from(data.clone())).await.unwrap();
    drop(tx);
    let rest = frames.rest().await;
    assert_eq!(
        rest.last().unwrap()["ack"].as_u64(),
        Some(data.len() as u64)
    );
    assert_eq!(
        server.files(),
        vec![format!("{}.cast", stem("ns", "pod", "dave"))]
    );
}

#[tokio::test]
async fn v2_probe_over_http1_is_refused_so_uploaders_fall_back() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start("v2-http1", &[]);
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"HEAD /v2/record HTTP/1.1\r\nHost: recorder\r\n\r\n")
        .await
        .unwrap();
    let (status, _) = read_response_to(&mut tcp, true).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn v2_idle_timeout_ends_the_upload_and_keeps_it_as_incomplete() {
    let server = Server::start("v2-idle-timeout", &["--idle-timeout", "1.5"]);
    let mut h2 = H2::h2c(server.addr).await;
    let data = cast("ns", "quiet-0", "lena", 2);
    let (tx, res) = h2.post(None).await;
    let mut frames = Frames::new(res.into_body());
    tx.send(Bytes::from(data.clone())).await.unwrap();
    let started = Instant::now();
    let rest = frames.rest().await;
    let error = rest.last().unwrap()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("no data for 1.5s"), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    // Acks kept coming until then, the last of them for everything sent.
    let acks: Vec<u64> = rest.iter().filter_map(|f| f["ack"].as_u64()).collect();
    assert_eq!(acks.last(), Some(&(data.len() as u64)));
    drop(tx);
    let name = format!("{}_incomplete.cast", stem("ns", "quiet-0", "lena"));
    eventually("the incomplete file", || {
        server.files().contains(&name).then_some(())
    })
    .await;
    assert_eq!(server.read(&name), data);
}
