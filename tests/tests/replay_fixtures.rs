//! Replaying every captured real-kubectl session gives its committed cast,
//! byte for byte, however the captured reads are cut; and the real
//! `asciinema` CLI accepts every cast.
//!
//! After re-capturing fixtures, write the expected casts anew with
//! `KUBECAST_REGENERATE_CASTS=1 cargo test -p kubecast-tests --test replay_fixtures`
//! and review the diff.

use kubecast_core::replay::replay;
use kubecast_core::session::{SessionConfig, SessionEvent, SessionMeta};
use kubecast_tests::fixtures::{Scenario, BIGOUT_LEN, FIXTURES};
use kubecast_tests::upstream::container::bigout_bytes;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn cast_of(capture: &[u8], split: Option<usize>) -> Vec<u8> {
    let result = replay(
        capture,
        SessionConfig::default(),
        SessionMeta::default(),
        Instant::now(),
        split,
    )
    .expect("a readable capture");
    assert!(
        !result
            .events
            .iter()
            .any(|e| matches!(e, SessionEvent::DecodeFailed { .. })),
        "decoding failed: {:?}",
        result.events
    );
    result.cast
}

#[test]
fn every_fixture_replays_to_its_committed_cast() {
    let regenerate = std::env::var_os("KUBECAST_REGENERATE_CASTS").is_some();
    for fixture in FIXTURES {
        let capture = std::fs::read(fixture_dir().join(fixture.file)).unwrap();
        let cast = cast_of(&capture, None);
        let expected_path = fixture_dir().join(fixture.file.replace(".cap", ".cast"));
        if regenerate {
            std::fs::write(&expected_path, &cast).unwrap();
            continue;
        }
        let expected = std::fs::read(&expected_path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; write it with KUBECAST_REGENERATE_CASTS=1",
                expected_path.display()
            )
        });
        assert!(
            cast == expected,
            "{} does not replay to {}:\n--- got ---\n{}",
            fixture.file,
            expected_path.display(),
            String::from_utf8_lossy(&cast)
        );
    }
}

#[test]
fn any_chunking_of_a_fixture_gives_the_same_cast() {
    for fixture in FIXTURES {
        let capture = std::fs::read(fixture_dir().join(fixture.file)).unwrap();
        let whole = cast_of(&capture, None);
        for split in [1, 2, 3, 7, 100, 4096] {
            assert!(
                cast_of(&capture, Some(split)) == whole,
                "{}: reads of {split} bytes change the cast",
                fixture.file
            );
        }
    }
}

#[test]
fn casts_show_what_the_user_saw() {
    for fixture in FIXTURES {
        let capture = std::fs::read(fixture_dir().join(fixture.file)).unwrap();
        let cast = String::from_utf8(cast_of(&capture, None)).unwrap();
        let mut lines = cast.lines();
        let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(header["version"], 2);
        let mut output = String::new();
        let mut last_time = 0.0;
        let mut markers = Vec::new();
        let mut resizes = Vec::new();
        for line in lines {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            let time = event[0].as_f64().unwrap();
            assert!(
                time >= last_time,
                "{}: time went back in {line}",
                fixture.file
            );
            last_time = time;
            let data = event[2].as_str().unwrap();
            match event[1].as_str().unwrap() {
                "o" => output.push_str(data),
                "m" => markers.push(data.to_string()),
                "r" => resizes.push(data.to_string()),
                other => panic!("{}: unexpected event code {other}", fixture.file),
            }
        }
        let (expected_output, exit) = match fixture.scenario {
            Scenario::Tty => ("[resized to 100x30]\r\n$ size\r\n100x30\r\n", "exit 0"),
            Scenario::Stdin | Scenario::AttachStdin => ("hello\nwörld € 😀\n", "exit 0"),
            Scenario::Exit3 => ("out\noops\n", "exit 3"),
            Scenario::Bigout => ("", "exit 0"),
        };
        if fixture.scenario == Scenario::Bigout {
            let expected = bigout_bytes(BIGOUT_LEN);
            assert!(
                output.as_bytes() == expected,
                "{}: bigout differs",
                fixture.file
            );
        }
        assert!(
            output.contains(expected_output),
            "{}: {output:?}",
            fixture.file
        );
        assert!(
            !output.contains('\u{fffd}'),
            "{}: a character was split",
            fixture.file
        );
        assert_eq!(
            markers.last().map(String::as_str),
            Some(exit),
            "{}",
            fixture.file
        );
        if fixture.scenario == Scenario::Tty {
            assert_eq!(
                (header["width"].as_u64(), header["height"].as_u64()),
                (Some(80), Some(24))
            );
            assert_eq!(resizes, ["100x30"], "{}", fixture.file);
        }
    }
}

/// The casts load in the asciinema CLI (2.x), a player nobody here wrote.
#[test]
fn asciinema_cat_accepts_every_cast() {
    let available = Command::new("asciinema")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "asciinema is not installed (tests/install-deps.sh installs it)"
        );
        eprintln!(
            "\n*** SKIPPING asciinema_cat_accepts_every_cast: asciinema not on the PATH ***\n"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("kubecast-asciinema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for fixture in FIXTURES {
        let capture = std::fs::read(fixture_dir().join(fixture.file)).unwrap();
        let path = dir.join(fixture.file.replace(".cap", ".cast"));
        std::fs::write(&path, cast_of(&capture, None)).unwrap();
        let out = Command::new("asciinema")
            .arg("cat")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "asciinema cat {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = String::from_utf8_lossy(&out.stdout);
        let expected = match fixture.scenario {
            Scenario::Tty => "100x30",
            Scenario::Stdin | Scenario::AttachStdin => "wörld € 😀",
            Scenario::Exit3 => "oops",
            Scenario::Bigout => "lazy dog",
        };
        assert!(shown.contains(expected), "{}: {shown}", fixture.file);
    }
    std::fs::remove_dir_all(&dir).ok();
}
