//! `kubecast recorder` lifecycle: graceful shutdown cuts open uploads and
//! keeps them as incomplete; a restart recovers temporary files left behind.

mod recorder_support;

use bytes::Bytes;
use recorder_support::*;

#[tokio::test]
async fn sigterm_stops_accepting_and_keeps_cut_uploads_as_incomplete() {
    let mut server = Server::start("shutdown", &["--shutdown-grace", "0.5"]);
    let mut h2 = H2::h2c(server.addr).await;
    let data = cast("default", "long-0", "judy", 10);
    let (tx, res) = h2.post(None).await;
    let mut frames = Frames::new(res.into_body());
    tx.send(Bytes::from(data.clone())).await.unwrap();
    frames.until_ack(data.len() as u64).await;

    let addr = server.addr;
    let status = tokio::task::spawn_blocking(move || {
        let status = server.signal_and_wait("TERM");
        (server, status)
    });
    // The open upload is told why it ends.
    let rest = frames.rest().await;
    let error = rest.last().unwrap()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("shutting down"), "{error}");
    let (server, status) = status.await.unwrap();
    assert!(status.success(), "{status:?}");
    let name = format!("{}_incomplete.cast", stem("default", "long-0", "judy"));
    assert_eq!(server.files(), vec![name.clone()]);
    assert_eq!(server.read(&name), data);
    assert!(server.hidden().is_empty());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    drop(tx);
}

#[tokio::test]
async fn sigint_with_no_open_upload_exits_at_once() {
    let mut server = Server::start("shutdown-idle", &[]);
    let started = std::time::Instant::now();
    let status = server.signal_and_wait("INT");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test]
async fn a_restart_recovers_temporary_files_as_incomplete() {
    let scratch = Scratch::create("recover");
    let dir = scratch.join("casts");
    std::fs::create_dir_all(&dir).unwrap();
    let data = cast("default", "crashed-0", "kim", 5);
    std::fs::write(dir.join(".kubecast-999999-0.partial"), &data).unwrap();
    std::fs::write(dir.join(".kubecast-999999-1.partial"), b"garbage").unwrap();
    let server = Server::start_in(scratch, dir, &[]);
    let files = server.files();
    let name = format!("{}_incomplete.cast", stem("default", "crashed-0", "kim"));
    assert!(files.contains(&name), "{files:?}");
    assert_eq!(server.read(&name), data);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files
        .iter()
        .any(|f| f.ends_with("_unknown_unknown_unknown_incomplete.cast")));
    assert!(server.hidden().is_empty());
}
