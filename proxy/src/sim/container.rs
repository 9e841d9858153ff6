//! The scripted "container": the processes an exec or attach runs.
//!
//! A process is an async function that reads [`Read`] events from its
//! [`Stdio`] and writes stdout/stderr through it. The protocol handlers
//! (WebSocket, SPDY) only move bytes between the wire and a [`Process`]; they
//! do not know what runs.
//!
//! When a tty is allocated, [`Stdio`] plays the terminal's line discipline
//! the way a Linux pty does by default: canonical input (a line is delivered
//! on Enter), `ICRNL` (the `\r` kubectl's raw terminal sends becomes `\n`),
//! `ECHO`/`ECHOE`/`ECHOCTL` (typed characters are echoed, backspace erases,
//! `^C` is echoed as `^C`), `ISIG` for `^C` and `VEOF` for `^D`, and on output
//! `ONLCR` (`\n` becomes `\r\n`). There is no stderr under a tty: it goes to
//! the terminal like stdout.
//!
//! Commands (the first word of the exec command):
//!
//! | command | does |
//! |---|---|
//! | `echo ARGS…` | prints the arguments, space separated, and a newline |
//! | `cat` | copies stdin to stdout until end of input |
//! | `seq N` | prints 1 to N, one per line |
//! | `bigout N` | prints [`bigout_bytes`]`(N)` in writes of [`BIGOUT_CHUNK`] bytes |
//! | `termout N` | prints N bytes of [`terminal_text`] in writes of [`TERMOUT_CHUNK`] bytes, paced by its reader: one stdin byte per [`TERMOUT_GRANT`] writes after the first [`TERMOUT_WINDOW`] |
//! | `stderr MSG…` | prints MSG and a newline on stderr |
//! | `size` | prints the terminal size as `COLSxROWS` (`unknown` without one) |
//! | `exit K` | exits with status K |
//! | `sh` | a shell-like prompt: `$ `, runs each line, reports resizes |
//! | `sh -c SCRIPT` | runs `;`/newline separated lines of SCRIPT |
//!
//! Anything else fails to start, the way a missing executable does: the
//! session ends with an `InternalError` Status.

use std::collections::VecDeque;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

mod termout;
pub use termout::{terminal_text, TERMOUT_CHUNK, TERMOUT_GRANT, TERMOUT_WINDOW};

/// Bytes per write of `bigout`: each write becomes one SPDY data frame or
/// one WebSocket message, so multi-byte characters are placed across these
/// boundaries on purpose.
pub const BIGOUT_CHUNK: usize = 1000;

/// A terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TermSize {
    pub cols: u16,
    pub rows: u16,
}

/// What the protocol handler hands the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bytes the client sent on stdin.
    Stdin(Vec<u8>),
    /// The client closed stdin (or never opened it).
    StdinEof,
    /// The client's terminal changed size.
    Resize(TermSize),
}

/// What the process writes, one message per write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It ran and exited with this status.
    Code(u8),
    /// It could not be started (the runtime's error message).
    StartFailed(String),
}

/// A running process: send it input, receive its output. The output channel
/// closes when the process has ended; its exit is then in `exit`.
#[derive(Debug)]
pub struct Process {
    pub input: mpsc::UnboundedSender<Input>,
    pub output: mpsc::UnboundedReceiver<Output>,
    pub exit: JoinHandle<Exit>,
}

/// Starts `command` (see the module docs). `tty` is the terminal's size when
/// a tty is allocated (`Some(None)` while no size is known yet), `None` for
/// plain pipes.
pub fn spawn(command: Vec<String>, tty: Option<Option<TermSize>>) -> Process {
    let (input_tx, input_rx) = mpsc::unbounded_channel();
    let (output_tx, output_rx) = mpsc::unbounded_channel();
    let exit = tokio::spawn(async move {
        let mut io = Stdio::new(tty.is_some(), input_rx, output_tx);
        io.size = tty.flatten();
        run(&command, &mut io).await
        // `io` drops here, closing the output channel after the last write.
    });
    Process {
        input: input_tx,
        output: output_rx,
        exit,
    }
}

/// The deterministic output of `bigout n`: exactly `n` bytes of valid UTF-8
/// that looks like terminal output (numbered lines with colour escapes), with
/// a 2-, 3- or 4-byte character (`é`, `€`, `😀`, in turn) straddling every
/// [`BIGOUT_CHUNK`] boundary — split after its first byte, then after its
/// second, and so on.
pub fn bigout_bytes(n: usize) -> Vec<u8> {
    const STRADDLERS: [&str; 3] = ["é", "€", "😀"];
    let mut out = Vec::with_capacity(n);
    let mut filler = Filler::default();
    for k in 0.. {
        let boundary = (k + 1) * BIGOUT_CHUNK;
        let c = STRADDLERS[k % STRADDLERS.len()].as_bytes();
        // 1 ..= len-1 bytes of the character before the boundary.
        let before = 1 + (k / STRADDLERS.len()) % (c.len() - 1);
        let start = boundary - before;
        if start + c.len() > n {
            break;
        }
        while out.len() < start {
            out.push(filler.next_byte());
        }
        out.extend_from_slice(c);
    }
    while out.len() < n {
        out.push(filler.next_byte());
    }
    out
}

/// Endless ASCII terminal-like lines for [`bigout_bytes`].
#[derive(Debug, Default)]
struct Filler {
    line: Vec<u8>,
    pos: usize,
    number: u32,
}

impl Filler {
    fn next_byte(&mut self) -> u8 {
        if self.pos == self.line.len() {
            self.number += 1;
            let colour = 31 + self.number % 6;
            self.line = format!(
                "\x1b[{colour}m{:05}\x1b[0m The quick brown fox jumps over the lazy dog; 0123456789 {}\n",
                self.number,
                "#".repeat((self.number % 17) as usize)
            )
            .into_bytes();
            self.pos = 0;
        }
        let b = self.line[self.pos];
        self.pos += 1;
        b
    }
}

/// What a process reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// Input bytes (under a tty: one line, with its `\n` unless ended by `^D`).
    Data(Vec<u8>),
    /// End of input (under a tty: `^D` at the start of a line).
    Eof,
    /// `^C` under a tty.
    Interrupt,
    /// The terminal size changed; `from` is `None` for the first size.
    Resize {
        from: Option<TermSize>,
        to: TermSize,
    },
}

/// A process's view of its stdin/stdout/stderr and terminal.
#[derive(Debug)]
pub struct Stdio {
    tty: bool,
    input: mpsc::UnboundedReceiver<Input>,
    output: mpsc::UnboundedSender<Output>,
    size: Option<TermSize>,
    /// The line being edited (tty).
    line: Vec<u8>,
    ready: VecDeque<Read>,
    eof: bool,
}

impl Stdio {
    fn new(
        tty: bool,
        input: mpsc::UnboundedReceiver<Input>,
        output: mpsc::UnboundedSender<Output>,
    ) -> Self {
        Stdio {
            tty,
            input,
            output,
            size: None,
            line: Vec::new(),
            ready: VecDeque::new(),
            eof: false,
        }
    }

    /// The current terminal size, if the client sent one.
    pub fn size(&self) -> Option<TermSize> {
        self.size
    }

    /// Whether a tty is allocated.
    pub fn tty(&self) -> bool {
        self.tty
    }

    /// The next input event.
    pub async fn read(&mut self) -> Read {
        loop {
            if let Some(read) = self.ready.pop_front() {
                return read;
            }
            if self.eof {
                return Read::Eof;
            }
            match self.input.recv().await {
                // The session ended: nothing more will come.
                None => self.eof = true,
                Some(Input::StdinEof) => {
                    if !self.line.is_empty() {
                        let line = std::mem::take(&mut self.line);
                        self.ready.push_back(Read::Data(line));
                    }
                    self.eof = true;
                }
                Some(Input::Resize(to)) => {
                    let from = self.size.replace(to);
                    return Read::Resize { from, to };
                }
                Some(Input::Stdin(bytes)) if self.tty => self.discipline(&bytes),
                Some(Input::Stdin(bytes)) => return Read::Data(bytes),
            }
        }
    }

    /// The canonical-mode line discipline: edits `self.line`, echoes, and
    /// queues complete lines and signals.
    fn discipline(&mut self, bytes: &[u8]) {
        let mut echo = Vec::new();
        for &b in bytes {
            match b {
                b'\r' | b'\n' => {
                    echo.extend_from_slice(b"\r\n");
                    let mut line = std::mem::take(&mut self.line);
                    line.push(b'\n');
                    self.ready.push_back(Read::Data(line));
                }
                0x7f | 0x08 => {
                    if let Some(last) = self.line.iter().rposition(|&c| c & 0xC0 != 0x80) {
                        self.line.truncate(last);
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                }
                0x03 => {
                    echo.extend_from_slice(b"^C\r\n");
                    self.line.clear();
                    self.ready.push_back(Read::Interrupt);
                }
                0x04 => {
                    let line = std::mem::take(&mut self.line);
                    self.ready.push_back(if line.is_empty() {
                        Read::Eof
                    } else {
                        Read::Data(line)
                    });
                }
                b'\t' => {
                    self.line.push(b);
                    echo.push(b);
                }
                0..=0x1f => {
                    self.line.push(b);
                    echo.extend_from_slice(&[b'^', b + 0x40]);
                }
                _ => {
                    self.line.push(b);
                    echo.push(b);
                }
            }
        }
        if !echo.is_empty() {
            let _ = self.output.send(Output::Stdout(echo));
        }
    }

    /// The line being typed but not yet entered (tty).
    pub fn pending_line(&self) -> &[u8] {
        &self.line
    }

    /// Writes to stdout (one wire message per call).
    pub fn stdout(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let bytes = if self.tty {
            onlcr(bytes)
        } else {
            bytes.to_vec()
        };
        let _ = self.output.send(Output::Stdout(bytes));
    }

    /// Writes to stderr; under a tty, to the terminal (stdout).
    pub fn stderr(&self, bytes: &[u8]) {
        if self.tty {
            self.stdout(bytes);
        } else if !bytes.is_empty() {
            let _ = self.output.send(Output::Stderr(bytes.to_vec()));
        }
    }
}

/// `\n` → `\r\n`, as a tty's output processing does.
fn onlcr(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for &b in bytes {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

async fn run(command: &[String], io: &mut Stdio) -> Exit {
    let Some((name, args)) = command.split_first() else {
        return Exit::StartFailed("no command given".into());
    };
    match name.as_str() {
        "cat" => Exit::Code(cat(io).await),
        "termout" => match args.first().and_then(|n| n.parse::<u64>().ok()) {
            Some(n) => Exit::Code(termout::termout(io, n).await),
            None => {
                io.stderr(b"termout: usage: termout N\n");
                Exit::Code(1)
            }
        },
        "sh" => match args {
            [] => Exit::Code(shell(io).await),
            [flag, script, ..] if flag == "-c" => Exit::Code(script_lines(io, script)),
            _ => {
                io.stderr(b"sh: usage: sh [-c SCRIPT]\n");
                Exit::Code(2)
            }
        },
        _ => match builtin(io, name, args) {
            Some(Step::Status(status)) | Some(Step::Exit(status)) => Exit::Code(status),
            None => Exit::StartFailed(format!(
                "failed to exec in container: exec: \"{name}\": executable file not found in $PATH"
            )),
        },
    }
}

/// What a builtin did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Ran, with this status.
    Status(u8),
    /// `exit K`.
    Exit(u8),
}

/// The commands that need no stdin; `None` if `name` is not one.
fn builtin(io: &Stdio, name: &str, args: &[String]) -> Option<Step> {
    Some(match name {
        "echo" => {
            io.stdout(format!("{}\n", args.join(" ")).as_bytes());
            Step::Status(0)
        }
        "seq" => match args.first().and_then(|n| n.parse::<u64>().ok()) {
            Some(n) => {
                let text: String = (1..=n).map(|i| format!("{i}\n")).collect();
                io.stdout(text.as_bytes());
                Step::Status(0)
            }
            None => {
                io.stderr(b"seq: usage: seq N\n");
                Step::Status(1)
            }
        },
        "bigout" => match args.first().and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => {
                for chunk in bigout_bytes(n).chunks(BIGOUT_CHUNK) {
                    io.stdout(chunk);
                }
                Step::Status(0)
            }
            None => {
                io.stderr(b"bigout: usage: bigout N\n");
                Step::Status(1)
            }
        },
        "stderr" => {
            io.stderr(format!("{}\n", args.join(" ")).as_bytes());
            Step::Status(0)
        }
        "size" => {
            let text = match io.size() {
                Some(s) => format!("{}x{}\n", s.cols, s.rows),
                None => "unknown\n".to_string(),
            };
            io.stdout(text.as_bytes());
            Step::Status(0)
        }
        "true" => Step::Status(0),
        "false" => Step::Status(1),
        "exit" => match args.first().map(|k| k.parse::<u8>()) {
            None => Step::Exit(0),
            Some(Ok(k)) => Step::Exit(k),
            Some(Err(_)) => {
                io.stderr(b"exit: numeric argument required\n");
                Step::Exit(2)
            }
        },
        _ => return None,
    })
}

async fn cat(io: &mut Stdio) -> u8 {
    loop {
        match io.read().await {
            Read::Data(bytes) => io.stdout(&bytes),
            Read::Eof => return 0,
            Read::Interrupt => return 130,
            Read::Resize { .. } => {}
        }
    }
}

/// Runs one command line; `Step::Exit` ends the shell.
fn shell_line(io: &Stdio, line: &[u8], last: u8) -> Step {
    let line = String::from_utf8_lossy(line);
    let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    let Some((name, args)) = words.split_first() else {
        return Step::Status(last);
    };
    if name == "exit" && args.is_empty() {
        return Step::Exit(last);
    }
    builtin(io, name, args).unwrap_or_else(|| {
        io.stderr(format!("sh: {name}: not found\n").as_bytes());
        Step::Status(127)
    })
}

fn script_lines(io: &Stdio, script: &str) -> u8 {
    let mut last = 0;
    for line in script.split([';', '\n']) {
        match shell_line(io, line.as_bytes(), last) {
            Step::Status(s) => last = s,
            Step::Exit(s) => return s,
        }
    }
    last
}

async fn shell(io: &mut Stdio) -> u8 {
    let prompt = |io: &Stdio| {
        if io.tty() {
            io.stdout(b"$ ");
        }
    };
    prompt(io);
    let mut last = 0;
    let mut pending = Vec::new();
    loop {
        match io.read().await {
            Read::Data(bytes) => {
                pending.extend_from_slice(&bytes);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    match shell_line(io, &line, last) {
                        Step::Status(s) => last = s,
                        Step::Exit(s) => return s,
                    }
                    prompt(io);
                }
            }
            Read::Eof => {
                if !pending.is_empty() {
                    if let Step::Exit(s) = shell_line(io, &pending, last) {
                        return s;
                    }
                }
                if io.tty() {
                    io.stdout(b"exit\n");
                }
                return last;
            }
            Read::Interrupt => {
                pending.clear();
                last = 130;
                prompt(io);
            }
            Read::Resize { from, to } => {
                // The first size is the terminal's initial size, not a change.
                if from.is_some() && from != Some(to) {
                    io.stdout(format!("\n[resized to {}x{}]\n", to.cols, to.rows).as_bytes());
                    prompt(io);
                    let partial = io.pending_line().to_vec();
                    io.stdout(&partial);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigout_is_exact_utf8_with_characters_across_every_chunk_boundary() {
        let bytes = bigout_bytes(20_000);
        assert_eq!(bytes.len(), 20_000);
        let text = std::str::from_utf8(&bytes).expect("valid UTF-8");
        for boundary in (BIGOUT_CHUNK..20_000).step_by(BIGOUT_CHUNK) {
            assert!(
                !text.is_char_boundary(boundary),
                "a character straddles {boundary}"
            );
        }
        let widths: Vec<usize> = (BIGOUT_CHUNK..20_000)
            .step_by(BIGOUT_CHUNK)
            .map(|b| text[..b + 4].chars().last().map_or(0, char::len_utf8))
            .collect();
        assert!(widths.len() > 3);
        for n in [0, 1, 999, 1000, 1001, 2999, 3000] {
            let b = bigout_bytes(n);
            assert_eq!(b.len(), n);
            assert!(std::str::from_utf8(&b).is_ok(), "bigout {n} is valid UTF-8");
        }
    }

    async fn outputs(mut p: Process) -> (Vec<Output>, Exit) {
        let mut out = Vec::new();
        while let Some(o) = p.output.recv().await {
            out.push(o);
        }
        (out, p.exit.await.unwrap())
    }

    #[tokio::test]
    async fn a_tty_echoes_edits_and_translates_newlines() {
        let p = spawn(
            vec!["sh".into()],
            Some(Some(TermSize { cols: 80, rows: 24 })),
        );
        p.input
            .send(Input::Stdin(b"ecx\x7fho hi\r".to_vec()))
            .unwrap();
        p.input
            .send(Input::Resize(TermSize {
                cols: 100,
                rows: 30,
            }))
            .unwrap();
        p.input
            .send(Input::Stdin(b"size\rexit 4\r".to_vec()))
            .unwrap();
        // Everything was sent before the process ran, so the echo of the
        // last two lines comes before their output — as on a real tty, which
        // echoes on input, not when the program reads.
        let (out, exit) = outputs(p).await;
        let text: Vec<u8> = out
            .into_iter()
            .flat_map(|o| match o {
                Output::Stdout(b) => b,
                Output::Stderr(_) => panic!("no stderr under a tty"),
            })
            .collect();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "$ ecx\x08 \x08ho hi\r\nhi\r\n$ \r\n[resized to 100x30]\r\n$ size\r\nexit 4\r\n100x30\r\n$ "
        );
        assert_eq!(exit, Exit::Code(4));
    }

    #[tokio::test]
    async fn cat_copies_until_eof_and_unknown_commands_fail_to_start() {
        let p = spawn(vec!["cat".into()], None);
        p.input.send(Input::Stdin(b"a\nb".to_vec())).unwrap();
        p.input.send(Input::StdinEof).unwrap();
        let (out, exit) = outputs(p).await;
        assert_eq!(out, vec![Output::Stdout(b"a\nb".to_vec())]);
        assert_eq!(exit, Exit::Code(0));
        let (out, exit) = outputs(spawn(vec!["nosuch".into()], None)).await;
        assert!(out.is_empty());
        assert!(matches!(exit, Exit::StartFailed(m) if m.contains("nosuch")));
        let (out, exit) = outputs(spawn(
            vec!["sh".into(), "-c".into(), "stderr oops; exit 3".into()],
            None,
        ))
        .await;
        assert_eq!(out, vec![Output::Stderr(b"oops\n".to_vec())]);
        assert_eq!(exit, Exit::Code(3));
    }
}
