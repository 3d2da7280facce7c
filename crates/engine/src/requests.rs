//! What a `roomcast.v1` client asks for (docs/protocol.md §3), carried out: joins (with the
//! application's authorization for the rooms that need it, and resume from history), leaves,
//! publishes under the relay policy, and presence lists. Every request gets one reply; a
//! malformed one gets an error code, never a crash or a close.

use std::sync::Arc;

use crate::connection::Connection;
use crate::endpoint::EndpointShared;
use crate::envelope::{self, ErrorCode, Ref, Request, RequestError};
use crate::events::AppEvent;
use crate::frame::Message;
use crate::registry::{JoinBy, LeaveBy};
use crate::stats::add;

/// Carries out one request from `conn`.
pub(crate) fn handle(endpoint: &EndpointShared, conn: &Arc<Connection>, message: Message) {
    let request = if message.is_text() {
        envelope::parse_text(message.payload())
    } else {
        envelope::parse_binary(message.payload())
    };
    if let Err(error) = request.and_then(|request| carry_out(endpoint, conn, request)) {
        refuse(endpoint, conn, &error);
    }
}

/// Answers a failed request; counted.
pub(crate) fn refuse(endpoint: &EndpointShared, conn: &Connection, error: &RequestError) {
    add(&endpoint.stats.request_errors, 1);
    conn.deliver_control(&envelope::error_frame(error));
}

fn carry_out(endpoint: &EndpointShared, conn: &Arc<Connection>, request: Request) -> Result<(), RequestError> {
    let registry = endpoint.engine.registry();
    match request {
        Request::Join { reference, room, since } => {
            let needs_authorization = endpoint.config.authorize_join || registry.config().is_reserved(&room);
            if needs_authorization && !conn.in_room(&room) {
                if !endpoint.config.authorize_join {
                    return Err(join_refused(reference, &room, ErrorCode::Forbidden, conn));
                }
                let pending = conn.pending_joins.load(std::sync::atomic::Ordering::Relaxed);
                if conn.rooms_mut().len() + pending >= conn.max_rooms() {
                    return Err(join_refused(reference, &room, ErrorCode::TooManyRooms, conn));
                }
                conn.endpoint.request_join(conn, reference, room, since);
                return Ok(());
            }
            registry
                .join(&room, conn, JoinBy::Request { reference, since })
                .map(|_| ())
                .map_err(|code| join_refused(reference, &room, code, conn))
        }
        Request::Leave { reference, room } => {
            if registry.leave(&room, conn, LeaveBy::Request(reference)) {
                Ok(())
            } else {
                Err(RequestError::new(Some(reference), ErrorCode::NotMember, format!("not in {room}")))
            }
        }
        Request::Publish { reference, room, publication } => {
            if !conn.in_room(&room) {
                return Err(RequestError::new(Some(reference), ErrorCode::NotMember, format!("not in {room}")));
            }
            if !endpoint.config.relay.allows(&room) {
                let why = format!("messages are not relayed in {room}");
                return Err(RequestError::new(Some(reference), ErrorCode::PublishDenied, why));
            }
            let published = endpoint.engine.broker().publish(&room, &publication, &[conn.id()]);
            conn.deliver_control(&envelope::publish_reply(reference, &room, published.offset));
            if endpoint.events.wants_messages() {
                let (text, payload) = (publication.is_text(), publication.payload());
                endpoint.events.push(AppEvent::Message { conn: conn.id(), text, payload, room: Some(Arc::from(room)) });
            }
            Ok(())
        }
        Request::Presence { reference, room } => match registry.answer_presence(&room, conn, reference) {
            Ok(()) => Ok(()),
            Err(code) => {
                let why = match code {
                    ErrorCode::NotMember => format!("not in {room}"),
                    _ => format!("{room} keeps no presence"),
                };
                Err(RequestError::new(Some(reference), code, why))
            }
        },
    }
}

/// The answer to a `join` of `room` that is refused with `code`.
pub(crate) fn join_refused(reference: Ref, room: &str, code: ErrorCode, conn: &Connection) -> RequestError {
    let message = match code {
        ErrorCode::Forbidden => format!("joining {room} is not allowed"),
        ErrorCode::AuthorizationFailed => "authorizeJoin failed".to_owned(),
        _ => format!("a connection may be in at most {} rooms", conn.max_rooms()),
    };
    RequestError::new(Some(reference), code, message)
}
