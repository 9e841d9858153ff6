//! The captured fixtures in `tests/fixtures/`: which sessions they hold and
//! how to record them again.
//!
//! Each fixture is one real `kubectl` (v1.32) exec/attach connection with
//! the [`crate::upstream::TestUpstream`], recorded by the
//! [`crate::capture::CaptureRelay`] between them. Regenerate them all with
//!
//! ```sh
//! cargo run -p kubecast-tests --bin kubecast-capture-fixtures
//! ```
//!
//! The session contents are deterministic (what is typed, the sizes, the
//! output), so the decode tests can assert them exactly; the bytes are not
//! (WebSocket masks and keys, zlib output, `Kubectl-Session`, timings).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::capture::CaptureRelay;
use crate::kubectl::{Kubectl, PtyOutput, PtySession, Transport};
use crate::upstream::TestUpstream;

/// What kind of session a fixture holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// `kubectl exec -it demo -- sh` under an 80x24 pty: type
    /// [`TTY_TYPED`] in steps (each key one stdin message), resize to
    /// 100x30 between them; exit 0.
    Tty,
    /// `printf STDIN_INPUT | kubectl exec -i demo -- cat`.
    Stdin,
    /// `kubectl exec demo -- sh -c "echo out; stderr oops; exit 3"`.
    Exit3,
    /// `kubectl exec demo -- bigout 20000`.
    Bigout,
    /// `printf STDIN_INPUT | kubectl attach -i worker` (main process `cat`).
    AttachStdin,
}

/// Every byte typed in the [`Scenario::Tty`] session, in order.
pub const TTY_TYPED: &[u8] = b"echo hello\rsize\rsize\rexit 0\r";
/// What the [`Scenario::Tty`] session shows (the upstream's stdout).
pub const TTY_STDOUT: &[u8] = b"$ echo hello\r\nhello\r\n$ size\r\n80x24\r\n$ \r\n[resized to 100x30]\r\n$ size\r\n100x30\r\n$ exit 0\r\n";
/// stdin of [`Scenario::Stdin`] and [`Scenario::AttachStdin`].
pub const STDIN_INPUT: &[u8] = "hello\nwörld € 😀\n".as_bytes();
/// The command of [`Scenario::Exit3`].
pub const EXIT3_SCRIPT: &str = "echo out; stderr oops; exit 3";
/// The size of [`Scenario::Bigout`]'s output.
pub const BIGOUT_LEN: usize = 20_000;

/// One committed fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixture {
    pub file: &'static str,
    pub transport: Transport,
    pub scenario: Scenario,
}

/// Every fixture in `tests/fixtures/`.
pub const FIXTURES: &[Fixture] = &[
    Fixture {
        file: "ws-v5-exec-tty.cap",
        transport: Transport::WebSocket,
        scenario: Scenario::Tty,
    },
    Fixture {
        file: "ws-v5-exec-stdin.cap",
        transport: Transport::WebSocket,
        scenario: Scenario::Stdin,
    },
    Fixture {
        file: "ws-v5-exec-exit3.cap",
        transport: Transport::WebSocket,
        scenario: Scenario::Exit3,
    },
    Fixture {
        file: "ws-v5-exec-bigout.cap",
        transport: Transport::WebSocket,
        scenario: Scenario::Bigout,
    },
    Fixture {
        file: "ws-v5-attach-stdin.cap",
        transport: Transport::WebSocket,
        scenario: Scenario::AttachStdin,
    },
    Fixture {
        file: "spdy-v4-exec-tty.cap",
        transport: Transport::Spdy,
        scenario: Scenario::Tty,
    },
    Fixture {
        file: "spdy-v4-exec-stdin.cap",
        transport: Transport::Spdy,
        scenario: Scenario::Stdin,
    },
    Fixture {
        file: "spdy-v4-exec-exit3.cap",
        transport: Transport::Spdy,
        scenario: Scenario::Exit3,
    },
    Fixture {
        file: "spdy-v4-exec-bigout.cap",
        transport: Transport::Spdy,
        scenario: Scenario::Bigout,
    },
    Fixture {
        file: "spdy-v4-attach-stdin.cap",
        transport: Transport::Spdy,
        scenario: Scenario::AttachStdin,
    },
];

/// `tests/fixtures/`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Runs `fixture`'s session with the real kubectl (`kubectl` is its path)
/// through a capture relay; returns the capture file's bytes.
pub async fn record(kubectl: &Path, fixture: &Fixture) -> Vec<u8> {
    let upstream = TestUpstream::start().await;
    let note = format!(
        "{}: real kubectl {:?} session with the kubecast test upstream ({:?}); regenerate with \
         `cargo run -p kubecast-tests --bin kubecast-capture-fixtures`",
        fixture.file, fixture.transport, fixture.scenario
    );
    let relay = CaptureRelay::start(upstream.addr(), &note).await;
    let k = Kubectl::new(kubectl.to_path_buf(), &relay.url());
    let t = fixture.transport;
    match fixture.scenario {
        Scenario::Tty => {
            let tty = k
                .spawn_pty(t, &["exec", "-it", "demo", "--", "sh"], 80, 24)
                .await;
            tty_dialog(tty).await;
        }
        Scenario::Stdin => {
            let out = k
                .run(t, &["exec", "-i", "demo", "--", "cat"], Some(STDIN_INPUT))
                .await;
            assert_eq!((out.code, &out.stdout[..]), (Some(0), STDIN_INPUT), "{out}");
        }
        Scenario::Exit3 => {
            let out = k
                .run(t, &["exec", "demo", "--", "sh", "-c", EXIT3_SCRIPT], None)
                .await;
            assert_eq!(out.code, Some(3), "{out}");
        }
        Scenario::Bigout => {
            let n = BIGOUT_LEN.to_string();
            let out = k.run(t, &["exec", "demo", "--", "bigout", &n], None).await;
            assert_eq!(out.code, Some(0), "{out}");
        }
        Scenario::AttachStdin => {
            let out = k
                .run(t, &["attach", "-i", "worker"], Some(STDIN_INPUT))
                .await;
            assert_eq!((out.code, &out.stdout[..]), (Some(0), STDIN_INPUT), "{out}");
        }
    }
    let captures = relay.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(captures.len(), 1, "one exec/attach connection per session");
    captures
        .into_iter()
        .next()
        .map(|c| c.bytes)
        .unwrap_or_default()
}

/// The tty dialog of [`Scenario::Tty`], which the captures hold and the
/// end-to-end tests repeat against every peer: under an 80x24 terminal,
/// `echo hello`, `size`, a resize to 100x30, `size`, `exit 0` ([`TTY_TYPED`]).
/// Asserts every screen and kubectl's exit code 0.
pub async fn tty_dialog(mut tty: PtySession) -> PtyOutput {
    tty.expect("$ ").await;
    tty.type_text("echo hello\r").await;
    assert_eq!(
        tty.expect("$ ").await,
        "\r\nhello\r\n$ ",
        "the tty echoes Enter as CRLF, then the output"
    );
    tty.type_text("size\r").await;
    assert_eq!(
        tty.expect("$ ").await,
        "\r\n80x24\r\n$ ",
        "the pty's size reached the container"
    );
    tty.resize(100, 30).await;
    assert_eq!(tty.expect("$ ").await, "\r\n[resized to 100x30]\r\n$ ");
    tty.type_text("size\r").await;
    assert_eq!(tty.expect("$ ").await, "\r\n100x30\r\n$ ");
    tty.type_text("exit 0\r").await;
    let out = tty.wait().await;
    assert_eq!(
        out.code,
        Some(0),
        "{:?}",
        String::from_utf8_lossy(&out.transcript)
    );
    out
}

/// `len` bytes of every value, then some UTF-8: stdin that a byte-exact
/// round trip must keep (more than kubectl's 32 KiB stdin chunk when
/// `len` is).
pub fn stdin_sample(len: u32) -> Vec<u8> {
    let mut input: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
    input.extend_from_slice("\nhé € 😀\n".as_bytes());
    input
}
