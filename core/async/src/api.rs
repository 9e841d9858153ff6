//! [`adapter_api!`]: the public functions and `RecordingHandle` both
//! adapters offer, written once. Their signatures name the runtime's own
//! stream traits (tokio's `AsyncRead`/`AsyncWrite`, or futures-io's), so
//! they cannot be one generic function; the macro stamps the same names,
//! docs and bodies into each adapter, which is also what keeps the two
//! public APIs identical.

/// Expands, in an adapter's module, to `drive`, `drive_until`,
/// `drive_until_ended`, `RecordingHandle`, `start_recording`,
/// `drive_recording`, `drive_recording_until` and
/// `drive_recording_until_ended` over the shared loop ([`crate::run`]).
///
/// - `read`, `write`: the runtime's stream traits;
/// - `stream`: a tuple struct wrapping such a stream as a
///   [`crate::ByteStream`];
/// - `clock`: the runtime's [`crate::Clock`];
/// - `transport`: the adapter's [`crate::UploadTransport`], built with
///   `new(tls, connect_timeout)`;
/// - `tls`: the TLS configuration type for `https://` recorders;
/// - `unblock`: the runtime's [`crate::Unblock`], for [`crate::FileSink`]'s
///   file I/O (also stamped: `FileSink`).
#[macro_export]
macro_rules! adapter_api {
    (
        read: $read:path,
        write: $write:path,
        stream: $stream:path,
        clock: $clock:ty,
        transport: $transport:ty,
        tls: $tls:ty,
        unblock: $unblock:ty $(,)?
    ) => {
        /// Writes the cast of one session to `DIR/STEM.cast` under a
        /// temporary name, placed when the session finishes — the rules are
        /// the core's `CastFile`.
        #[derive(Debug)]
        pub struct FileSink($crate::FileSink<$unblock>);

        impl FileSink {
            /// A sink for `DIR/STEM.cast`; `dir` is created if needed when
            /// the first cast bytes arrive.
            pub fn new(dir: impl Into<::std::path::PathBuf>, stem: &str) -> FileSink {
                FileSink($crate::FileSink::new(dir, stem))
            }

            /// Where the recording was placed, once `finish` has run
            /// (`None` when there was nothing to record).
            pub fn path(&self) -> Option<&::std::path::Path> {
                self.0.path()
            }

            /// Cast bytes written so far.
            pub fn written(&self) -> u64 {
                self.0.written()
            }
        }

        impl $crate::__core::drive::SessionSink for FileSink {
            fn event(
                &mut self,
                event: $crate::__core::session::SessionEvent,
            ) -> impl ::std::future::Future<Output = Result<(), $crate::__core::drive::SinkError>> + Send
            {
                self.0.event(event)
            }

            fn cast(
                &mut self,
                bytes: $crate::__bytes::Bytes,
            ) -> impl ::std::future::Future<Output = Result<(), $crate::__core::drive::SinkError>> + Send
            {
                self.0.cast(bytes)
            }

            fn finish(
                &mut self,
            ) -> impl ::std::future::Future<Output = Result<(), $crate::__core::drive::SinkError>> + Send
            {
                self.0.finish()
            }
        }

        /// Drives `session` between `client` and `upstream` until both
        /// directions have ended, forwarding every byte unchanged while the
        /// session observes it; the outputs go to `sink`, each awaited before
        /// the bytes that made it are forwarded. The loop's rules are the
        /// core's (`kubecast_core::drive::Driver`); see the crate
        /// documentation.
        ///
        /// Dropping the returned future abandons the session on the spot: the
        /// sink's `finish` is not called. To end a session early and still
        /// finish its recording, use [`drive_until`] or [`drive_until_ended`].
        pub async fn drive<C, U, S>(
            session: &mut $crate::__core::session::Session,
            client: C,
            upstream: U,
            sink: &mut S,
            options: &$crate::__core::drive::DriveOptions,
        ) -> Result<$crate::__core::drive::DriveSummary, $crate::__core::drive::DriveError>
        where
            C: $read + $write + Unpin,
            U: $read + $write + Unpin,
            S: $crate::__core::drive::SessionSink,
        {
            let mut machine = $crate::__core::drive::SessionMachine::new(session);
            run(
                &mut machine,
                client,
                upstream,
                sink,
                options,
                std::future::pending(),
            )
            .await
        }

        /// [`drive`], ended early when `stop` completes: the core hears that
        /// both sides are done (so the cast is finished), the sink's `finish`
        /// is called, both streams are dropped, and the result is
        /// `DriveErrorKind::Stopped`. Nothing tells the client why; see
        /// [`drive_until_ended`].
        pub async fn drive_until<C, U, S, F>(
            session: &mut $crate::__core::session::Session,
            client: C,
            upstream: U,
            sink: &mut S,
            options: &$crate::__core::drive::DriveOptions,
            stop: F,
        ) -> Result<$crate::__core::drive::DriveSummary, $crate::__core::drive::DriveError>
        where
            C: $read + $write + Unpin,
            U: $read + $write + Unpin,
            S: $crate::__core::drive::SessionSink,
            F: ::std::future::Future<Output = ()>,
        {
            let mut machine = $crate::__core::drive::SessionMachine::new(session);
            let stop = async {
                stop.await;
                None
            };
            run(&mut machine, client, upstream, sink, options, stop).await
        }

        /// [`drive`], ended by the caller with a message when `end` completes
        /// (e.g. a proxy's shutdown grace period is over): the core writes it
        /// to the client at the upstream's next frame boundary — a Status on
        /// the error channel or stream, which kubectl prints before it exits
        /// non-zero — forwards nothing more from the client, and ends the
        /// cast with a marker; then both streams close, as at any end
        /// (`kubecast_core::drive::Driver::on_stop`). The result is `Ok`
        /// unless something else ended the session first.
        pub async fn drive_until_ended<C, U, S, F>(
            session: &mut $crate::__core::session::Session,
            client: C,
            upstream: U,
            sink: &mut S,
            options: &$crate::__core::drive::DriveOptions,
            end: F,
        ) -> Result<$crate::__core::drive::DriveSummary, $crate::__core::drive::DriveError>
        where
            C: $read + $write + Unpin,
            U: $read + $write + Unpin,
            S: $crate::__core::drive::SessionSink,
            F: ::std::future::Future<Output = String>,
        {
            let mut machine = $crate::__core::drive::SessionMachine::new(session);
            let end = async { Some(end.await) };
            run(&mut machine, client, upstream, sink, options, end).await
        }

        /// A `Recording` and the I/O of its upload, created as soon as the
        /// session is known and driven with [`drive_recording`]; see
        /// `kubecast_core::drive::RecordingMachine` for the whole contract.
        #[derive(Debug)]
        pub struct RecordingHandle($crate::Recorder<$transport, $clock>);

        impl RecordingHandle {
            /// Takes over `recording` (just created: its upload is dialling)
            /// and starts the upload's I/O. `tls` is used for `https://`
            /// recorders.
            pub fn new(recording: $crate::__core::recording::Recording, tls: $tls) -> Self {
                let connect_timeout = recording.upload().config().attempt_budget;
                let transport = <$transport>::new(tls, connect_timeout);
                RecordingHandle($crate::Recorder::new(recording, transport))
            }

            /// The core machine, for its getters (upload state, progress,
            /// attempt log, session).
            pub fn recording(&self) -> &$crate::__core::recording::Recording {
                self.0.recording()
            }

            /// The upload's failure, once it failed.
            pub fn failure(&self) -> Option<&$crate::__core::upload::UploadFailure> {
                self.0.failure()
            }

            /// Runs the upload until it is open (a recorder accepted it:
            /// `Ok`) or failed (every recorder tried, or the overall budget
            /// spent: `Err`, with every attempt). Bounded by the upload's
            /// overall budget. The upload log so far reaches the sink when
            /// the session is driven.
            pub async fn wait_open(&mut self) -> Result<(), $crate::__core::upload::UploadFailure> {
                self.0.wait_open().await
            }
        }

        /// [`RecordingHandle::new`], then [`RecordingHandle::wait_open`]: on
        /// `Err` a fail-closed proxy refuses the request (nothing went
        /// upstream).
        pub async fn start_recording(
            recording: $crate::__core::recording::Recording,
            tls: $tls,
        ) -> Result<RecordingHandle, $crate::__core::upload::UploadFailure> {
            let mut handle = RecordingHandle::new(recording, tls);
            handle.wait_open().await?;
            Ok(handle)
        }

        /// Drives a recorded session between `client` and `upstream` — the
        /// loop of [`drive`] — while its cast streams to the recorder;
        /// fail-closed ends it with `DriveErrorKind::RecordingFailed`. The
        /// upload is run to its end before the sink's `finish`; the outcome
        /// is in `DriveSummary::upload_completed` /
        /// `DriveSummary::upload_failure`.
        pub async fn drive_recording<C, U, S>(
            handle: &mut RecordingHandle,
            client: C,
            upstream: U,
            sink: &mut S,
            options: &$crate::__core::drive::DriveOptions,
        ) -> Result<$crate::__core::drive::DriveSummary, $crate::__core::drive::DriveError>
        where
            C: $read + $write + Unpin,
            U: $read + $write + Unpin,
            S: $crate::__core::drive::SessionSink,
        {
            let stop = std::future::pending();
            run(&mut handle.0, client, upstream, sink, options, stop).await
        }

        /// [`drive_recording`], ended early when `stop` completes (see
        /// [`drive_until`]); the upload still gets to finish.
        pub async fn drive_recording_until<C, U, S, F>(
            handle: &mut RecordingHandle,
            client: C,
            upstream: U,
            sink: &mut S,
            options: &$crate::__core::drive::DriveOptions,
            stop: F,
        ) -> Result<$crate::__core::drive::DriveSummary, $crate::__core::drive::DriveError>
        where
            C: $read + $write + Unpin,
            U: $read + $write + Unpin,
            S: $crate::__core::drive::SessionSink,
            F: ::std::future::Future<Output = ()>,
        {
            let stop = async {
                stop.await;
                None
            };
            run(&mut handle.0, client, upstream, sink, options, stop).await
        }

        /// [`drive_recording`], ended by the caller with a message when `end`
        /// completes (see [`drive_until_ended`]); the cast gets its end
        /// marker and the upload finishes.
        pub async fn drive_recording_until_ended<C, U, S, F>(
            handle: &mut RecordingHandle,
            client: C,
            upstream: U,
            sink: &mut S,
            options: &$crate::__core::drive::DriveOptions,
            end: F,
        ) -> Result<$crate::__core::drive::DriveSummary, $crate::__core::drive::DriveError>
        where
            C: $read + $write + Unpin,
            U: $read + $write + Unpin,
            S: $crate::__core::drive::SessionSink,
            F: ::std::future::Future<Output = String>,
        {
            let end = async { Some(end.await) };
            run(&mut handle.0, client, upstream, sink, options, end).await
        }

        /// The shared loop on this runtime's streams and clock.
        async fn run<D, C, U, S, F>(
            driven: &mut D,
            client: C,
            upstream: U,
            sink: &mut S,
            options: &$crate::__core::drive::DriveOptions,
            stop: F,
        ) -> Result<$crate::__core::drive::DriveSummary, $crate::__core::drive::DriveError>
        where
            D: $crate::Driven<$clock>,
            C: $read + $write + Unpin,
            U: $read + $write + Unpin,
            S: $crate::__core::drive::SessionSink,
            F: ::std::future::Future<Output = Option<String>>,
        {
            let (client, upstream) = ($stream(client), $stream(upstream));
            $crate::run(driven, client, upstream, sink, options, stop).await
        }
    };
}
