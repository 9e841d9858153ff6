//! The sans-IO contract in a blocking program (`std::net`, threads, a mutex):
//! proxies kubectl ⇄ API server until one exec/attach session is recorded,
//! and writes its cast. Per direction a thread reads, feeds the [`Session`],
//! drains its outputs, then forwards the bytes unchanged; reads time out at
//! the session's next deadline so `handle_timeout` runs on time.
//! `cargo run -p kubecast-core --example blocking_proxy -- LISTEN UPSTREAM OUT.cast`
#![allow(clippy::disallowed_methods)] // the adapter owns the clock the core never reads

use kubecast_core::session::{Output, Session, SessionConfig, SessionMeta};
use kubecast_core::Side;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One connection's session and its cast file (created at the first cast
/// bytes), shared by the connection's two threads.
struct Shared {
    session: Session,
    out: String,
    cast: Option<File>,
}

impl Shared {
    /// Drains every output: the cast to the file, events to stderr.
    fn drain(&mut self) -> io::Result<()> {
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Cast(bytes) => match &mut self.cast {
                    Some(file) => file.write_all(&bytes)?,
                    None => self
                        .cast
                        .insert(File::create_new(&self.out)?)
                        .write_all(&bytes)?,
                },
                Output::Event(event) => eprintln!("event: {event:?}"),
                Output::Capture(_) | Output::Inject { .. } => {}
            }
        }
        Ok(())
    }

    /// Fires a passed deadline; returns how long the next read may block.
    fn tick(&mut self) -> io::Result<Duration> {
        let now = Instant::now();
        if self.session.poll_timeout().is_some_and(|d| d <= now) {
            self.session.handle_timeout(now);
            self.drain()?;
        }
        let next = self
            .session
            .poll_timeout()
            .map(|d| d.saturating_duration_since(now));
        Ok(next
            .unwrap_or(Duration::MAX)
            .clamp(Duration::from_millis(1), Duration::from_secs(1)))
    }
}

fn lock(shared: &Mutex<Shared>) -> io::Result<MutexGuard<'_, Shared>> {
    shared
        .lock()
        .map_err(|_| io::Error::other("a thread panicked"))
}

/// Copies `from` → `to`, showing every read to the session first.
fn pump(
    side: Side,
    mut from: TcpStream,
    mut to: TcpStream,
    shared: Arc<Mutex<Shared>>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        from.set_read_timeout(Some(lock(&shared)?.tick()?))?;
        let n = match from.read(&mut buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            read => read?,
        };
        let mut s = lock(&shared)?;
        if n == 0 {
            s.session.handle_eof(Instant::now(), side);
            s.drain()?;
            // Half-close: the peer sees this side's end; the other direction goes on.
            return to.shutdown(Shutdown::Write);
        }
        match side {
            Side::Client => s.session.handle_client_bytes(Instant::now(), &buf[..n]),
            Side::Upstream => s.session.handle_upstream_bytes(Instant::now(), &buf[..n]),
        }
        s.drain()?;
        drop(s);
        to.write_all(&buf[..n])?; // observed, then forwarded unchanged
    }
}

/// Serves one connection; returns whether it recorded a session.
fn serve(client: TcpStream, upstream: &str, out: &str) -> io::Result<bool> {
    let upstream = TcpStream::connect(upstream)?;
    let started = SystemTime::now().duration_since(UNIX_EPOCH).ok();
    let meta = SessionMeta {
        started_unix: started.map(|d| d.as_secs()),
        ..SessionMeta::default()
    };
    let session = Session::new(SessionConfig::default(), meta);
    let shared = Arc::new(Mutex::new(Shared {
        session,
        out: out.to_string(),
        cast: None,
    }));
    let (from, to, other) = (
        upstream.try_clone()?,
        client.try_clone()?,
        Arc::clone(&shared),
    );
    let up = std::thread::spawn(move || pump(Side::Upstream, from, to, other));
    let down = pump(Side::Client, client, upstream, Arc::clone(&shared));
    down.and(up.join().unwrap_or(Err(ErrorKind::Other.into())))?;
    let recorded = lock(&shared)?.cast.is_some();
    Ok(recorded)
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, out] = <[String; 3]>::try_from(args).unwrap_or_else(|_| {
        eprintln!("usage: blocking_proxy LISTEN_ADDR UPSTREAM_ADDR OUT.cast");
        std::process::exit(2)
    });
    let listener = TcpListener::bind(listen)?;
    println!("listening on {}", listener.local_addr()?);
    let (done, recorded) = mpsc::channel();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (upstream, out, done) = (upstream.clone(), out.clone(), done.clone());
            std::thread::spawn(move || match serve(client, &upstream, &out) {
                Ok(true) => drop(done.send(out)),
                Ok(false) => {}
                Err(e) => eprintln!("connection failed: {e}"),
            });
        }
    });
    let out = recorded
        .recv()
        .map_err(|_| io::Error::other("listener stopped"))?;
    eprintln!("cast written to {out}");
    Ok(())
}
