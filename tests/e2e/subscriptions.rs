//! GraphQL subscriptions over WebSocket (`/graphql/ws`): both protocols, authentication in `connection_init`,
//! masking by role, and on PostgreSQL a change committed by one replica reaching a subscriber of another.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::app::{TestApp, open_dispute, test_databases};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// graphql-transport-ws (the graphql-ws library) or the older subscriptions-transport-ws (whose
/// subprotocol is named `graphql-ws`).
#[derive(Clone, Copy)]
enum Protocol {
    TransportWs,
    Legacy,
}

impl Protocol {
    /// The message type that starts a subscription.
    fn start_type(self) -> &'static str {
        match self {
            Protocol::TransportWs => "subscribe",
            Protocol::Legacy => "start",
        }
    }
}

struct Subscriber {
    socket: Socket,
    protocol: Protocol,
}

impl Subscriber {
    /// Opens the socket and sends `connection_init` with `payload`; returns the socket and the server's first
    /// answer (an ack, or an error or close).
    async fn open(app: &TestApp, protocol: Protocol, payload: Value) -> (Self, Option<Value>) {
        let mut request = format!("ws://{}/graphql/ws", app.addr).into_client_request().unwrap();
        let name = match protocol {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::Legacy => "graphql-ws",
        };
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", name.parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let mut subscriber = Subscriber { socket, protocol };
        subscriber
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        let first = subscriber.next_message(Duration::from_secs(5)).await;
        (subscriber, first)
    }

    /// Connected and acknowledged with `token`.
    async fn connect(app: &TestApp, protocol: Protocol, token: &str) -> Self {
        let (subscriber, first) =
            Self::open(app, protocol, json!({ "Authorization": format!("Bearer {token}") })).await;
        let first = first.expect("an answer to connection_init");
        assert_eq!(first["type"], "connection_ack", "{}: {first}", app.label);
        subscriber
    }

    async fn send(&mut self, message: Value) {
        self.try_send(message).await.unwrap();
    }

    /// Sends, or says the socket is already closed (the server may close first).
    async fn try_send(&mut self, message: Value) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.socket.send(Message::Text(message.to_string().into())).await
    }

    async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = self.protocol.start_type();
        self.send(json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next protocol message other than keep-alives, or `None` on close or after `wait`; a close frame is
    /// returned as `{"type": "close", "code": ..}`.
    async fn next_message(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next()).await.ok()??;
            match message {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if matches!(value["type"].as_str(), Some("ka" | "ping" | "pong")) {
                        continue;
                    }
                    return Some(value);
                }
                Ok(Message::Close(frame)) => {
                    return Some(json!({ "type": "close", "code": frame.map(|f| u16::from(f.code)) }));
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The payload of the next result of subscription `id` (`next` or legacy `data`).
    async fn next_result(&mut self, id: &str, wait: Duration) -> Option<Value> {
        let message = self.next_message(wait).await?;
        assert!(
            matches!(message["type"].as_str(), Some("next" | "data")),
            "expected a result, got {message}"
        );
        assert_eq!(message["id"], id);
        Some(message["payload"].clone())
    }
}

const DISPUTE_EVENTS: &str = "subscription($id: ID!) { disputeEvents(id: $id) { \
    dispute { id version queue customer { name email } } events { version type actor details } } }";

const ALL_CHANGES: &str = "subscription { disputeChanges { dispute { id version customer { email } } \
    events { version type } } }";

const ADD_NOTE: &str =
    "mutation($input: AddNoteInput!) { addNote(input: $input) { dispute { __typename } userErrors { code message } } }";

/// Adds notes to `id` on `writer` until `subscriber` hears of one (a subscription starts listening a moment
/// after `subscribe` is sent, and the protocol does not acknowledge it), and returns what it heard.
async fn note_until_heard(writer: &TestApp, id: &str, subscriber: &mut Subscriber, sub_id: &str) -> Value {
    for attempt in 0..20 {
        writer
            .gql(
                &writer.analyst,
                ADD_NOTE,
                json!({ "input": { "id": id, "note": format!("note {attempt}") } }),
            )
            .await
            .data();
        while let Some(payload) = subscriber.next_result(sub_id, Duration::from_millis(750)).await {
            // Under load an earlier change (the opening) may arrive first: the note is what is waited for.
            let change = payload["data"].as_object().and_then(|data| data.values().next());
            let noted = change
                .and_then(|change| change["events"].as_array())
                .is_some_and(|events| events.iter().any(|event| event["type"] == "NOTE_ADDED"));
            if noted {
                return payload;
            }
        }
    }
    panic!("{}: the subscriber heard of no change", writer.label);
}

#[tokio::test]
async fn a_subscriber_hears_each_change_of_a_dispute_masked_by_role() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let id = open_dispute(&app, &format!("dp_sub_{}", db.label)).await;

        let mut viewer = Subscriber::connect(&app, Protocol::TransportWs, &app.viewer).await;
        viewer.subscribe("v", DISPUTE_EVENTS, json!({ "id": id })).await;
        let heard = note_until_heard(&app, &id, &mut viewer, "v").await;
        let change = &heard["data"]["disputeEvents"];
        assert_eq!(change["dispute"]["id"], id.as_str(), "{}: {heard}", db.label);
        assert_eq!(change["events"][0]["type"], "NOTE_ADDED", "{}: {heard}", db.label);
        assert_eq!(change["events"][0]["actor"], "analyst:alice");
        let email = change["dispute"]["customer"]["email"].as_str().unwrap();
        assert_ne!(
            email, "jeanne.dupont@example.fr",
            "{}: a viewer sees the email masked",
            db.label
        );
        let version = change["dispute"]["version"].as_i64().unwrap();

        // The older protocol, as an analyst: every change, personal data shown.
        let mut analyst = Subscriber::connect(&app, Protocol::Legacy, &app.analyst).await;
        analyst.subscribe("a", ALL_CHANGES, json!({})).await;
        let heard = note_until_heard(&app, &id, &mut analyst, "a").await;
        let change = &heard["data"]["disputeChanges"];
        assert_eq!(
            change["dispute"]["customer"]["email"], "jeanne.dupont@example.fr",
            "{}",
            db.label
        );
        assert!(change["events"][0]["version"].as_i64().unwrap() > version);

        // The viewer heard every later note too, in order, each once.
        let mut last = version;
        while let Some(payload) = viewer.next_result("v", Duration::from_millis(500)).await {
            let events = payload["data"]["disputeEvents"]["events"].as_array().unwrap().clone();
            for event in events {
                let v = event["version"].as_i64().unwrap();
                assert_eq!(v, last + 1, "{}: events arrive in order, each once", db.label);
                last = v;
            }
        }
        assert!(last > version, "{}: the viewer heard the analyst's notes", db.label);

        // Another dispute's change does not reach a subscriber of this one.
        let other = open_dispute(&app, &format!("dp_sub_other_{}", db.label)).await;
        app.gql(
            &app.analyst,
            ADD_NOTE,
            json!({ "input": { "id": other, "note": "elsewhere" } }),
        )
        .await
        .data();
        assert!(
            viewer.next_message(Duration::from_millis(500)).await.is_none(),
            "{}",
            db.label
        );
    }
}

#[tokio::test]
async fn a_subscription_without_a_valid_key_is_refused() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        for (protocol, payload) in [
            (Protocol::TransportWs, json!({})),
            (
                Protocol::TransportWs,
                json!({ "Authorization": "Bearer vdk_not_a_key" }),
            ),
            (Protocol::Legacy, json!({ "token": "vdk_not_a_key" })),
        ] {
            let (mut subscriber, first) = Subscriber::open(&app, protocol, payload.clone()).await;
            let first = first.unwrap_or(json!({ "type": "close" }));
            assert!(
                matches!(first["type"].as_str(), Some("close" | "connection_error")),
                "{}: {payload} was answered {first}",
                db.label
            );
            // Nothing is served afterwards; a socket the server already closed refuses the subscription itself.
            let start = json!({ "id": "x", "type": protocol.start_type(), "payload": { "query": ALL_CHANGES } });
            if subscriber.try_send(start).await.is_err() {
                continue;
            }
            let later = subscriber.next_message(Duration::from_millis(300)).await;
            assert!(
                later.is_none() || later.as_ref().is_some_and(|m| m["type"] == "close"),
                "{}: {later:?}",
                db.label
            );
        }
        // A key in the other accepted form works.
        let (_ok, first) = Subscriber::open(&app, Protocol::Legacy, json!({ "token": app.viewer })).await;
        assert_eq!(first.unwrap()["type"], "connection_ack", "{}", db.label);
    }
}

#[tokio::test]
async fn a_change_committed_on_one_replica_reaches_a_subscriber_of_another() {
    let Some(db) = test_databases()
        .await
        .unwrap()
        .into_iter()
        .find(|db| db.url.starts_with("postgres"))
    else {
        eprintln!("skipped: set VERDICT_TEST_DATABASE_URL to run the two-replica subscription test");
        return;
    };
    let writer = TestApp::start(&db).await;
    // A second replica on the same database: the keys are the first one's.
    let reader = TestApp::start_without_keys(&db).await;
    let id = open_dispute(&writer, "dp_sub_replicas").await;

    let mut subscriber = Subscriber::connect(&reader, Protocol::TransportWs, &writer.viewer).await;
    subscriber.subscribe("r", DISPUTE_EVENTS, json!({ "id": id })).await;
    let heard = note_until_heard(&writer, &id, &mut subscriber, "r").await;
    assert_eq!(heard["data"]["disputeEvents"]["dispute"]["id"], id.as_str(), "{heard}");
    assert_eq!(heard["data"]["disputeEvents"]["events"][0]["type"], "NOTE_ADDED");

    // The reader's listener loses its connection; a change committed meanwhile still arrives (read from the
    // change feed when it reconnects, if its notice was lost).
    let store = verdict_store::Store::connect(&db.url).await.unwrap();
    store
        .execute_unprepared(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query ILIKE 'LISTEN%verdict_changes%' AND datname = current_database()",
        )
        .await
        .unwrap();
    writer
        .gql(
            &writer.analyst,
            ADD_NOTE,
            json!({ "input": { "id": id, "note": "while disconnected" } }),
        )
        .await
        .data();
    let mut heard_it = false;
    while let Some(payload) = subscriber.next_result("r", Duration::from_secs(10)).await {
        let events = payload["data"]["disputeEvents"]["events"].as_array().unwrap().clone();
        if events.iter().any(|e| e["details"]["note"] == "while disconnected") {
            heard_it = true;
            break;
        }
    }
    assert!(
        heard_it,
        "the change committed while the listener was down never arrived"
    );
}
