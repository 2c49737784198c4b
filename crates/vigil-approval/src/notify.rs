//! Telling approvers: where they act (the API's URL of a request) and the webhooks that hear of
//! requests, decisions and expiries. Deliveries run in the background, each attempt recorded.

use crate::rules::AccessRequest;
use crate::webhook::{self, Notification, WebhookConfig};
use std::sync::Arc;
use vigil_core::event::WebhookDelivery;
use vigil_core::{Event, EventDraft, EventSink, SecretError, SecretString};

/// What webhooks are told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    RequestCreated,
    RequestDecided,
    RequestExpired,
    GrantExpired,
}

impl Notice {
    fn as_str(self) -> &'static str {
        match self {
            Notice::RequestCreated => "request_created",
            Notice::RequestDecided => "request_decided",
            Notice::RequestExpired => "request_expired",
            Notice::GrantExpired => "grant_expired",
        }
    }
}

/// A webhook's secret could not be read at startup.
#[derive(Debug, thiserror::Error)]
#[error("approvals.webhooks {name:?}: secret: {source}")]
pub struct WebhookSecretError {
    pub name: String,
    pub source: SecretError,
}

pub(crate) struct Notifier {
    /// Where approvers reach the API, for links.
    public_url: Option<String>,
    webhooks: Vec<(WebhookConfig, Arc<SecretString>)>,
    http: reqwest::Client,
}

impl Notifier {
    /// Reads the webhooks' secrets now (a missing one stops startup).
    pub(crate) fn new(
        public_url: Option<String>,
        webhooks: &[WebhookConfig],
    ) -> Result<Self, WebhookSecretError> {
        let webhooks = webhooks
            .iter()
            .map(|hook| {
                let secret = hook.secret.resolve().map_err(|source| WebhookSecretError {
                    name: hook.name.clone(),
                    source,
                })?;
                Ok((hook.clone(), Arc::new(secret)))
            })
            .collect::<Result<_, WebhookSecretError>>()?;
        Ok(Notifier {
            public_url,
            webhooks,
            http: reqwest::Client::new(),
        })
    }

    /// The API's URL of request `id`, if Vigil knows where the API is reached.
    pub(crate) fn url_of(&self, id: &str) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|u| format!("{}/api/v1/access-requests/{id}", u.trim_end_matches('/')))
    }

    /// How an approver approves request `id`.
    pub(crate) fn how_to_approve(&self, id: &str) -> String {
        match self.url_of(id) {
            Some(url) => format!(
                "an approver runs `vigil request approve {id} --reason TEXT` or POSTs to {url}/approve"
            ),
            None => format!("an approver runs `vigil request approve {id} --reason TEXT`"),
        }
    }

    /// Sends `notice` about `request` to every webhook that wants it, in the background; every
    /// attempt is recorded through `sink`.
    pub(crate) fn notify(
        &self,
        notice: Notice,
        request: &AccessRequest,
        sink: &Arc<dyn EventSink>,
    ) {
        let event = notice.as_str();
        let hooks: Vec<_> = self
            .webhooks
            .iter()
            .filter(|(h, _)| h.wants(event))
            .cloned()
            .collect();
        if hooks.is_empty() {
            return;
        }
        let summary = match notice {
            Notice::RequestCreated => format!(
                "{} asks for access to {} (request {})",
                request.identity, request.connection, request.id
            ),
            Notice::GrantExpired => format!(
                "the grant of access request {} ({} on {}) expired",
                request.id, request.identity, request.connection
            ),
            Notice::RequestDecided | Notice::RequestExpired => format!(
                "access request {} of {} on {} is {}",
                request.id,
                request.identity,
                request.connection,
                request.status.as_str()
            ),
        };
        let n = Notification {
            event: event.to_string(),
            data: serde_json::to_value(request).unwrap_or_default(),
            approve_url: self.url_of(&request.id),
            summary,
        };
        for (hook, secret) in hooks {
            let (http, sink, n, subject) = (
                self.http.clone(),
                sink.clone(),
                n.clone(),
                request.id.clone(),
            );
            tokio::spawn(async move {
                webhook::deliver(&http, &hook, secret.expose().as_bytes(), &n, |a| {
                    sink.append_detached(EventDraft::new(Event::WebhookDelivery(
                        WebhookDelivery {
                            webhook: a.webhook,
                            notification: a.event,
                            subject_id: subject.clone(),
                            attempt: a.attempt,
                            delivered: a.delivered,
                            http_status: a.status,
                            error: a.error,
                        },
                    )));
                })
                .await;
            });
        }
    }
}
