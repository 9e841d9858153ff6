//! `kubecast demo`: what a newcomer types first must work as printed.
//!
//! The test starts the demo, takes the kubectl command lines from its banner
//! word for word, runs them with the real kubectl (over WebSocket and over
//! SPDY), and checks that each session was recorded as a playable cast and
//! that SIGTERM stops the demo cleanly.

use kubecast_tests::kubectl::{kubectl_or_skip, Kubectl, Transport};
use kubecast_tests::process::{LoggedProcess, PROCESS_STEP};
use kubecast_tests::scratch::TempDir;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Demo {
    process: LoggedProcess,
    /// The banner's command lines, e.g. `kubectl --kubeconfig=/dev/null
    /// --server=http://127.0.0.1:PORT exec demo -- echo hello from the pod`.
    commands: Vec<Vec<String>>,
    server: String,
    home: TempDir,
}

impl Demo {
    fn start() -> Demo {
        let home = TempDir::new("kubecast-demo").unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_kubecast"));
        command
            .args(["demo", "--listen", "127.0.0.1:0"])
            .current_dir(home.path())
            .env("HOME", home.path())
            .stdout(Stdio::piped());
        let mut process = LoggedProcess::spawn("demo", command);
        let stdout = process.child_mut().stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut commands = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                println!("[demo] {line}");
                if line.trim_start().starts_with("kubectl ") {
                    commands.push(line.split_whitespace().map(str::to_owned).collect());
                }
                if line.contains("Ctrl-C stops the demo") {
                    let _ = tx.send(std::mem::take(&mut commands));
                }
            }
        });
        let commands: Vec<Vec<String>> = rx
            .recv_timeout(PROCESS_STEP)
            .unwrap_or_else(|_| panic!("no banner from the demo:\n{}", process.log_text()));
        let server = commands[0]
            .iter()
            .find_map(|word| word.strip_prefix("--server="))
            .expect("the banner names the server")
            .to_owned();
        Demo {
            process,
            commands,
            server,
            home,
        }
    }

    /// The banner's line that contains `needle`, as argv without `kubectl`.
    fn command(&self, needle: &str) -> Vec<String> {
        let line = self
            .commands
            .iter()
            .find(|words| words.join(" ").contains(needle))
            .unwrap_or_else(|| panic!("no banner line with {needle:?}: {:?}", self.commands));
        line[1..].to_vec()
    }

    /// SIGTERM: the demo must exit 0. Returns the recordings directory.
    async fn stop(&mut self) -> PathBuf {
        self.process.signal("TERM");
        let exit = self.process.wait_exit(PROCESS_STEP).await;
        assert!(exit.success(), "the demo exits 0 on SIGTERM: {exit:?}");
        self.home.join("recordings")
    }
}

fn casts(dir: &Path) -> Vec<(serde_json::Value, Vec<serde_json::Value>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            assert_eq!(path.extension().unwrap(), "cast", "{path:?}");
            let text = std::fs::read_to_string(path).unwrap();
            let mut lines = text.lines();
            let header = serde_json::from_str(lines.next().unwrap()).unwrap();
            let events = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
            (header, events)
        })
        .collect()
}

fn output_of(events: &[serde_json::Value]) -> String {
    events
        .iter()
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap())
        .collect()
}

async fn the_printed_commands_work_and_are_recorded(transport: Transport) {
    let Some(kubectl) = kubectl_or_skip("demo") else {
        return;
    };
    let mut demo = Demo::start();

    let echo = demo.command("exec demo -- echo");
    let home = TempDir::new("kubecast-demo-kubectl").unwrap();
    let out = tokio::process::Command::new(&kubectl)
        .args(&echo)
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", transport.env_value())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from the pod\n");

    // The interactive line, under a terminal. (The harness brings its own
    // empty kubeconfig; the banner's uses /dev/null — same server.)
    assert!(demo
        .command("exec -it demo -- sh")
        .contains(&format!("--server={}", demo.server)));
    let tty = Kubectl::new(kubectl, &demo.server);
    let mut shell = tty
        .spawn_pty(transport, &["exec", "-it", "demo", "--", "sh"], 80, 24)
        .await;
    shell.expect("$ ").await;
    shell.type_text("echo typed in the demo\r").await;
    shell.expect("typed in the demo\r\n$ ").await;
    shell.type_text("exit 0\r").await;
    assert_eq!(shell.wait().await.code, Some(0));

    let recordings = demo.stop().await;
    let casts = casts(&recordings);
    assert_eq!(casts.len(), 2, "one cast per session");
    let (echo_header, echo_events) = casts
        .iter()
        .find(|(header, _)| header["command"] == "echo hello from the pod")
        .expect("the echo session's cast");
    assert_eq!(echo_header["kubernetes"]["pod"], "demo");
    assert_eq!(
        echo_header["kubernetes"]["protocol"],
        match transport {
            Transport::WebSocket => "websocket",
            Transport::Spdy => "spdy",
        }
    );
    assert_eq!(output_of(echo_events), "hello from the pod\n");
    let (tty_header, tty_events) = casts
        .iter()
        .find(|(header, _)| header["command"] == "sh")
        .expect("the shell session's cast");
    assert_eq!(tty_header["kubernetes"]["tty"], true);
    assert!(output_of(tty_events).contains("typed in the demo"));
    assert_eq!(tty_events.last().unwrap()[2], "exit 0");
}

kubecast_tests::over_both_transports!(the_printed_commands_work_and_are_recorded);
