//! How an [`Upload`] moves between states: the private half of its `impl`,
//! kept apart from the public inputs and getters in `mod.rs`.

use super::*;

impl Upload {
    pub(super) fn phase_of_state(&self) -> Option<Phase> {
        Some(match &self.state {
            State::Trying { step, .. } => match step {
                Step::Dialing => Phase::Dialing,
                Step::Probing => Phase::Probing,
                Step::AwaitingHead => Phase::AwaitingHead,
                Step::AwaitingContinue { .. } => Phase::AwaitingContinue,
            },
            State::Open { link, .. } => match link {
                Link::V2 { ended, .. } => Phase::V2 { ended: *ended },
                Link::V1 { final_deadline, .. } => Phase::V1 {
                    ended: final_deadline.is_some(),
                },
            },
            State::Completed | State::Failed => return None,
        })
    }

    /// The phase of the current attempt if it is `attempt`.
    pub(super) fn phase(&self, attempt: AttemptId) -> Option<Phase> {
        match &self.state {
            State::Trying { cur, .. } | State::Open { cur, .. } if cur.id == attempt => {
                self.phase_of_state()
            }
            _ => None,
        }
    }

    pub(super) fn current_target(&self) -> Option<Target> {
        match &self.state {
            State::Trying { cur, .. } | State::Open { cur, .. } => Some(cur.target),
            State::Completed | State::Failed => None,
        }
    }

    pub(super) fn set_step(&mut self, new: Step) {
        if let State::Trying { step, .. } = &mut self.state {
            *step = new;
        }
    }

    pub(super) fn request_head(&self, addr: &RecorderAddr, method: &'static str) -> RequestHead {
        let mut headers = vec![("user-agent".to_string(), self.config.user_agent.clone())];
        if method == "POST" {
            headers.push(("content-type".into(), v1::CAST_CONTENT_TYPE.into()));
        }
        if let Some(token) = &self.config.token {
            headers.push(("authorization".into(), format!("Bearer {token}")));
        }
        headers.extend(self.config.headers.iter().cloned());
        RequestHead {
            method,
            path: v2::V2_PATH,
            authority: addr.authority(),
            headers,
        }
    }

    pub(super) fn start_attempt(&mut self, now: Instant, target: Target) {
        let Some(recorder) = self.config.recorders.get(target.recorder).cloned() else {
            self.give_up(FailureReason::NoRecorderAccepted);
            return;
        };
        let id = self.failover.next_id();
        self.outputs.push_back(UploadOutput::Connect {
            attempt: id,
            recorder,
            protocol: target.protocol,
        });
        self.state = State::Trying {
            cur: Current {
                id,
                target,
                started: now,
            },
            deadline: deadline(now, self.config.attempt_budget),
            step: Step::Dialing,
        };
    }

    /// `100 Continue` (or the wait for it ran out): open the v1 upload.
    pub(super) fn continue_v1(&mut self, now: Instant) {
        let state = std::mem::replace(&mut self.state, State::Failed);
        match state {
            State::Trying {
                cur,
                deadline,
                step: Step::AwaitingContinue { response, .. },
            } => {
                self.state = State::Trying {
                    cur,
                    deadline,
                    step: Step::Dialing,
                };
                self.open_v1(now, response);
            }
            // A repeated `100 Continue` once open is harmless.
            other => self.state = other,
        }
    }

    pub(super) fn open_v1(&mut self, now: Instant, response: ResponseReader) {
        let link = Link::V1 {
            response,
            final_deadline: None,
        };
        self.open(now, link);
    }

    /// The current attempt's upload opens: flush what was buffered.
    pub(super) fn open(&mut self, now: Instant, link: Link) {
        let State::Trying { cur, .. } = self.state else {
            return;
        };
        let v1 = matches!(link, Link::V1 { .. });
        if let Some(recorder) = self.config.recorders.get(cur.target.recorder) {
            self.outputs.push_back(UploadOutput::Started {
                attempt: cur.id,
                recorder: recorder.clone(),
                protocol: cur.target.protocol,
            });
        }
        self.state = State::Open { cur, link };
        let queue: Vec<Bytes> = std::mem::take(&mut self.queue).into();
        let len = std::mem::take(&mut self.queued);
        if len > 0 {
            self.send(cur.id, v1, &queue, len);
        }
        if self.finish_requested {
            self.end_body(now);
        }
    }

    /// Hands cast bytes to the adapter: v2 as they are, v1 as one chunk.
    pub(super) fn send(&mut self, attempt: AttemptId, v1: bool, parts: &[Bytes], len: usize) {
        self.progress.sent += len as u64;
        if v1 {
            let bytes = v1::chunk(parts, len);
            self.outputs
                .push_back(UploadOutput::Send { attempt, bytes });
        } else {
            for bytes in parts.iter().filter(|b| !b.is_empty()).cloned() {
                self.outputs
                    .push_back(UploadOutput::Send { attempt, bytes });
            }
        }
    }

    pub(super) fn end_body(&mut self, now: Instant) {
        let State::Open { cur, link } = &mut self.state else {
            return;
        };
        let attempt = cur.id;
        match link {
            Link::V2 { ended, .. } => {
                if *ended {
                    return;
                }
                *ended = true;
            }
            Link::V1 { final_deadline, .. } => {
                if final_deadline.is_some() {
                    return;
                }
                *final_deadline = Some(deadline(now, self.config.final_response_wait));
                self.outputs.push_back(UploadOutput::Send {
                    attempt,
                    bytes: Bytes::from_static(v1::LAST_CHUNK),
                });
            }
        }
        self.outputs.push_back(UploadOutput::EndStream { attempt });
    }

    pub(super) fn on_ack(&mut self, now: Instant, ack: u64) {
        let sent = self.progress.sent;
        if ack > sent {
            let error = ProtocolError::AckBeyondSent { ack, sent };
            self.fail(now, error.into(), Then::NextRecorder);
            return;
        }
        // Acks only move forward; a smaller one (e.g. `{}`) is a heartbeat.
        self.progress.acked = self.progress.acked.max(ack);
        let window = self.config.ack_window;
        if let State::Open {
            link: Link::V2 { ack_deadline, .. },
            ..
        } = &mut self.state
        {
            *ack_deadline = deadline(now, window);
        }
    }

    pub(super) fn v1_final(&mut self, now: Instant, response: FinalResponse) {
        let Some(phase) = self.phase_of_state() else {
            return;
        };
        let ok = (200..300).contains(&response.status);
        if ok && phase == (Phase::V1 { ended: true }) {
            self.progress.acked = self.progress.sent;
            self.complete();
            return;
        }
        let expect = self.current_target().is_some_and(|t| t.expect_continue);
        let then = if response.status == 417 && expect {
            Then::RetryWithoutExpect
        } else {
            Then::NextRecorder
        };
        let error = AttemptError::Status {
            status: response.status,
            message: if ok {
                format!("{} before the body ended", response.message)
            } else {
                response.message
            },
        };
        self.fail(now, error, then);
    }

    pub(super) fn complete(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Completed);
        if let State::Open { cur, .. } = state {
            self.outputs
                .push_back(UploadOutput::Close { attempt: cur.id });
        }
        self.outputs.push_back(UploadOutput::Completed {
            bytes: self.progress.sent,
        });
    }

    /// The current attempt failed with `error`; `then` is where to go next
    /// if the upload may still move on.
    pub(super) fn fail(&mut self, now: Instant, error: AttemptError, then: Then) {
        let Some(phase) = self.phase_of_state() else {
            return;
        };
        let state = std::mem::replace(&mut self.state, State::Failed);
        let cur = match state {
            State::Trying { cur, .. } | State::Open { cur, .. } => cur,
            State::Completed | State::Failed => return,
        };
        let Some(recorder) = self.config.recorders.get(cur.target.recorder).cloned() else {
            return;
        };
        let interrupted =
            matches!(phase, Phase::V1 { .. } | Phase::V2 { .. }) && self.progress.sent > 0;
        let next = if interrupted {
            Err(FailureReason::Interrupted {
                attempt: cur.id,
                recorder: recorder.clone(),
                protocol: cur.target.protocol,
                error: error.clone(),
            })
        } else {
            self.failover.after(now, cur.target, then)
        };
        let record = AttemptRecord {
            attempt: cur.id,
            recorder,
            protocol: cur.target.protocol,
            stage: phase.stage(),
            error,
            started: cur.started,
            failed: now,
            then: next.as_ref().map_or(Then::GaveUp, |(_, then)| *then),
        };
        self.failover.log(record.clone());
        self.outputs.push_back(UploadOutput::AttemptFailed(record));
        self.outputs
            .push_back(UploadOutput::Close { attempt: cur.id });
        match next {
            Ok((target, _)) => self.start_attempt(now, target),
            Err(reason) => self.give_up(reason),
        }
    }

    pub(super) fn give_up(&mut self, reason: FailureReason) {
        self.state = State::Failed;
        self.queue.clear();
        self.queued = 0;
        self.outputs.push_back(UploadOutput::Failed(UploadFailure {
            reason,
            attempts: self.failover.attempts().to_vec(),
            accepted: self.progress.accepted,
            sent: self.progress.sent,
            acked: self.progress.acked,
        }));
    }
}
