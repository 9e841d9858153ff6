//! [`Runtime`] for the two adapter crates, written once: the adapters
//! offer the same names (`drive`, `start_recording`, `RecordingHandle`,
//! `drive_recording`, `drive_recording_until_ended`), so one macro body serves both — which is the
//! promise that switching runtimes is changing one import. The executor
//! is a parameter ([`Executor`]): tokio's current-thread runtime
//! ([`OnTokio`]) for `kubecast-tokio`; smol's or async-std's `block_on`
//! (defined by the test files, which own those dev-dependencies) for
//! `kubecast-smol`.

use super::{Collect, RecordJob, Recorded, Runtime};
use kubecast_core::drive::{DriveError, DriveOptions, DriveSummary};
use kubecast_core::session::Session;
use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::net::TcpStream;
use std::task::Poll;

/// Runs a future to completion on the current thread.
pub trait Executor {
    fn block_on<F: Future>(future: F) -> F::Output;
}

/// A current-thread tokio runtime with I/O and timers.
#[derive(Debug)]
pub struct OnTokio;

impl Executor for OnTokio {
    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(future)
    }
}

/// Runs `futures` together on the calling task; their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut running: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = running.iter().map(|_| None).collect();
    poll_fn(|cx| {
        for (slot, output) in running.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                if let Poll::Ready(done) = future.as_mut().poll(cx) {
                    *output = Some(done);
                    *slot = None;
                }
            }
        }
        if running.iter().all(Option::is_none) {
            Poll::Ready(outputs.drain(..).flatten().collect())
        } else {
            Poll::Pending
        }
    })
    .await
}

fn tokio_stream(stream: TcpStream) -> tokio::net::TcpStream {
    stream.set_nonblocking(true).expect("non-blocking");
    tokio::net::TcpStream::from_std(stream).expect("a tokio socket")
}

/// async-net's socket: its `close()` shuts the write half down, which is
/// how the smol driver passes on an end of file (async-io's bare
/// `Async<TcpStream>` only flushes).
fn futures_io_stream(stream: TcpStream) -> async_net::TcpStream {
    async_net::TcpStream::try_from(stream).expect("an async-net socket")
}

macro_rules! adapter {
    ($(#[$doc:meta])* $name:ident, $krate:ident, $stream:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<E>(PhantomData<E>);

        impl<E: Executor> Runtime for $name<E> {
            fn drive(
                mut session: Session,
                client: TcpStream,
                upstream: TcpStream,
                options: DriveOptions,
                mut sink: Collect,
            ) -> Result<DriveSummary, DriveError> {
                E::block_on(async move {
                    let (client, upstream) = ($stream(client), $stream(upstream));
                    $krate::drive(&mut session, client, upstream, &mut sink, &options).await
                })
            }

            fn record(job: RecordJob) -> Recorded {
                E::block_on(Self::recorded(job))
            }

            fn record_together(jobs: Vec<RecordJob>) -> Vec<Recorded> {
                E::block_on(join_all(jobs.into_iter().map(Self::recorded).collect()))
            }
        }

        impl<E: Executor> $name<E> {
            async fn recorded(job: RecordJob) -> Recorded {
                let RecordJob {
                    recording,
                    tls,
                    wait_open,
                    opened,
                    client,
                    upstream,
                    options,
                    mut sink,
                    end,
                } = job;
                {
                    let mut handle = if wait_open {
                        match $krate::start_recording(recording, tls).await {
                            Ok(handle) => {
                                let _ = opened.send(Ok(()));
                                handle
                            }
                            Err(failure) => {
                                let _ = opened.send(Err(failure.clone()));
                                return Recorded {
                                    result: None,
                                    acked: 0,
                                    failure: Some(failure),
                                };
                            }
                        }
                    } else {
                        $krate::RecordingHandle::new(recording, tls)
                    };
                    let (client, upstream) = ($stream(client), $stream(upstream));
                    let result = match end {
                        Some(end) => {
                            $krate::drive_recording_until_ended(
                                &mut handle,
                                client,
                                upstream,
                                &mut sink,
                                &options,
                                end.message(),
                            )
                            .await
                        }
                        None => {
                            $krate::drive_recording(
                                &mut handle,
                                client,
                                upstream,
                                &mut sink,
                                &options,
                            )
                            .await
                        }
                    };
                    Recorded {
                        result: Some(result),
                        acked: handle.recording().upload().progress().acked,
                        failure: handle.failure().cloned(),
                    }
                }
            }
        }
    };
}

adapter!(
    /// `kubecast-tokio` on executor `E` (normally [`OnTokio`]).
    Tokio,
    kubecast_tokio,
    tokio_stream
);
adapter!(
    /// `kubecast-smol` on executor `E` (smol's, async-std's, …).
    Smol,
    kubecast_smol,
    futures_io_stream
);
