//! `kubecast recorder`, v1: `POST /record` over HTTP/1.1 with
//! `Expect: 100-continue`, spoken byte by byte from a raw socket; and the
//! file store's naming rules.

mod recorder_support;

use recorder_support::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Sends the head of a v1 upload.
async fn start_upload(addr: SocketAddr, extra_headers: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /record HTTP/1.1\r\nHost: recorder\r\nExpect: 100-continue\r\n{extra_headers}\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

/// Uploads `data` chunked after the 100; returns the final status and body.
async fn upload_chunked(addr: SocketAddr, data: &[u8], pieces: usize) -> (u16, String) {
    let mut tcp = start_upload(addr, "Transfer-Encoding: chunked\r\n").await;
    let (status, _) = read_response(&mut tcp).await;
    assert_eq!(status, 100, "the body must wait for 100 Continue");
    for piece in data.chunks(data.len() / pieces + 1) {
        tcp.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        tcp.write_all(piece).await.unwrap();
        tcp.write_all(b"\r\n").await.unwrap();
    }
    tcp.write_all(b"0\r\n\r\n").await.unwrap();
    read_response(&mut tcp).await
}

#[tokio::test]
async fn v1_chunked_upload_after_100_continue_is_stored_exactly() {
    let server = Server::start("v1-chunked", &[]);
    let data = cast("default", "web-0", "alice", 300);
    let (status, body) = upload_chunked(server.addr, &data, 7).await;
    assert_eq!(status, 200, "{body}");
    let name = format!("{}.cast", stem("default", "web-0", "alice"));
    assert!(body.contains(&name), "{body}");
    assert_eq!(server.files(), vec![name.clone()]);
    assert_eq!(server.read(&name), data);
    assert!(server.hidden().is_empty());
    let line = &server.wait_log("v1 complete", 1).await[0];
    assert!(line.contains(&format!("bytes={}", data.len())), "{line}");
}

#[tokio::test]
async fn v1_content_length_upload_is_stored_exactly() {
    let server = Server::start("v1-length", &[]);
    let data = cast("default", "web-1", "bob", 50);
    let mut tcp = start_upload(server.addr, &format!("Content-Length: {}\r\n", data.len())).await;
    assert_eq!(read_response(&mut tcp).await.0, 100);
    tcp.write_all(&data).await.unwrap();
    let (status, body) = read_response(&mut tcp).await;
    assert_eq!(status, 200, "{body}");
    let name = format!("{}.cast", stem("default", "web-1", "bob"));
    assert_eq!(server.read(&name), data);
}

#[tokio::test]
async fn v1_rejects_a_first_line_that_is_not_an_asciicast_v2_header() {
    let server = Server::start("v1-reject", &[]);
    let (status, body) = upload_chunked(server.addr, b"#!/bin/sh\necho hi\n", 1).await;
    assert_eq!(status, 400);
    assert!(body.contains("asciicast"), "{body}");
    server.wait_log("v1 rejected", 1).await;
    assert!(server.files().is_empty());
    assert!(server.hidden().is_empty());
}

#[tokio::test]
async fn v1_token_missing_or_wrong_is_401_before_100_continue() {
    let scratch = Scratch::create("v1-token-file");
    let token_file = scratch.join("token");
    std::fs::write(&token_file, "  tok-123 \n").unwrap();
    let server = Server::start("v1-token", &["--token-file", token_file.to_str().unwrap()]);
    for auth in [
        "",
        "Authorization: Bearer nope\r\n",
        "Authorization: tok-123\r\n",
    ] {
        let mut tcp = start_upload(
            server.addr,
            &format!("{auth}Transfer-Encoding: chunked\r\n"),
        )
        .await;
        let (status, body) = read_response(&mut tcp).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
    }
    let data = cast("ns", "pod", "erin", 2);
    let mut tcp = start_upload(
        server.addr,
        &format!(
            "Authorization: Bearer tok-123\r\nContent-Length: {}\r\n",
            data.len()
        ),
    )
    .await;
    assert_eq!(read_response(&mut tcp).await.0, 100);
    tcp.write_all(&data).await.unwrap();
    assert_eq!(read_response(&mut tcp).await.0, 200);
    assert_eq!(server.files().len(), 1);
}

#[tokio::test]
async fn v1_size_limit() {
    let server = Server::start("v1-limit", &["--max-recording-bytes", "1000"]);
    // A declared length over the limit is refused before the body is sent.
    let mut tcp = start_upload(server.addr, "Content-Length: 5000\r\n").await;
    let (status, body) = read_response(&mut tcp).await;
    assert_eq!(status, 413, "{body}");
    // A chunked upload that grows past it keeps the first 1000 bytes.
    let data = cast("default", "big", "frank", 200);
    let mut tcp = start_upload(server.addr, "Transfer-Encoding: chunked\r\n").await;
    assert_eq!(read_response(&mut tcp).await.0, 100);
    for piece in data.chunks(256) {
        let chunk = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
        if tcp.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let (status, body) = read_response(&mut tcp).await;
    assert_eq!(status, 413, "{body}");
    let name = format!("{}_incomplete.cast", stem("default", "big", "frank"));
    eventually("the incomplete file", || {
        server.files().contains(&name).then_some(())
    })
    .await;
    assert_eq!(server.read(&name), &data[..1000]);
}

#[tokio::test]
async fn v1_upload_cut_mid_way_is_kept_as_incomplete() {
    let server = Server::start("v1-cut", &[]);
    let data = cast("prod", "api-7", "grace", 40);
    let half = data.len() / 2;
    let mut tcp = start_upload(server.addr, "Transfer-Encoding: chunked\r\n").await;
    assert_eq!(read_response(&mut tcp).await.0, 100);
    tcp.write_all(format!("{half:x}\r\n").as_bytes())
        .await
        .unwrap();
    tcp.write_all(&data[..half]).await.unwrap();
    tcp.write_all(b"\r\n").await.unwrap();
    tcp.flush().await.unwrap();
    // Let the chunk arrive, then vanish.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(tcp);
    let name = format!("{}_incomplete.cast", stem("prod", "api-7", "grace"));
    eventually("the incomplete file", || {
        server.files().contains(&name).then_some(())
    })
    .await;
    assert_eq!(server.read(&name), &data[..half]);
    server.wait_log("v1 incomplete", 1).await;
}

#[tokio::test]
async fn name_collisions_never_overwrite() {
    let server = Server::start("v1-collide", &[]);
    let stem = stem("default", "web-0", "alice");
    // Something already has the first name.
    std::fs::write(server.dir.join(format!("{stem}.cast")), b"precious").unwrap();
    let mut casts = Vec::new();
    for i in 0..3 {
        let mut data = cast("default", "web-0", "alice", 3);
        data.extend_from_slice(format!("[9.0, \"o\", \"upload {i}\"]\n").as_bytes());
        let (status, body) = upload_chunked(server.addr, &data, 2).await;
        assert_eq!(status, 200, "{body}");
        casts.push(data);
    }
    assert_eq!(
        server.files(),
        vec![
            format!("{stem}.cast"),
            format!("{stem}_2.cast"),
            format!("{stem}_3.cast"),
            format!("{stem}_4.cast"),
        ]
    );
    assert_eq!(server.read(&format!("{stem}.cast")), b"precious");
    for (i, data) in casts.iter().enumerate() {
        assert_eq!(&server.read(&format!("{stem}_{}.cast", i + 2)), data);
    }
}

#[tokio::test]
async fn hostile_names_in_the_header_are_sanitised() {
    let server = Server::start("v1-hostile", &[]);
    let long = "p".repeat(500);
    let data = cast(
        "../../etc",
        &format!("a/b\u{0}c\u{1b}[31m{long}"),
        "..\nroot_x:y",
        1,
    );
    let (status, body) = upload_chunked(server.addr, &data, 1).await;
    assert_eq!(status, 200, "{body}");
    let files = server.files();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = &files[0];
    assert!(
        name.starts_with("20261101T120304Z_etc_a-b-c--31m"),
        "{name}"
    );
    assert!(name.ends_with("_root-x-y.cast"), "{name}");
    assert!(name.len() < 255 && !name.contains(".."), "{name}");
    assert!(name.chars().all(|c| c.is_ascii_graphic()), "{name}");
    assert_eq!(server.read(name), data);
    // Nothing was written outside the directory.
    let parent = server.dir.parent().unwrap();
    let siblings: Vec<_> = std::fs::read_dir(parent).unwrap().collect();
    assert_eq!(siblings.len(), 1, "{siblings:?}");
    // The log line escapes control characters.
    let line = &server.wait_log("v1 complete", 1).await[0];
    assert!(line.contains(r#"user="..\nroot_x:y""#), "{line}");
}

#[tokio::test]
async fn a_header_without_timestamp_is_named_by_the_receive_time() {
    let server = Server::start("v1-no-timestamp", &[]);
    let data = b"{\"version\":2,\"width\":80,\"height\":24}\n[0.5,\"o\",\"x\"]\n";
    let before = std::time::SystemTime::now();
    let (status, body) = upload_chunked(server.addr, data, 1).await;
    assert_eq!(status, 200, "{body}");
    let files = server.files();
    assert_eq!(files.len(), 1);
    assert!(
        files[0].ends_with("_unknown_unknown_unknown.cast"),
        "{files:?}"
    );
    // YYYYMMDD of now (UTC), within a day either side of midnight.
    let secs = before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let year = 1970 + secs / 31_556_952;
    assert!(
        files[0].starts_with(&year.to_string()) || files[0].starts_with(&(year + 1).to_string()),
        "{files:?}"
    );
}
