use std::time::Duration;

use verdict_domain::Processor;
use verdict_facts::{FactsError, HttpFacts, MAX_RESPONSE_BYTES, MarketplaceFacts, OrderLookup};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::example;

fn lookup() -> OrderLookup {
    OrderLookup {
        processor: Processor::Stripe,
        order_reference: Some("A-17".into()),
        payment_references: vec!["ch_3Ofacts17".into(), "pi_3Ofacts17".into()],
    }
}

async fn source(server: &MockServer, timeout: Duration) -> HttpFacts {
    let _ = rustls::crypto::ring::default_provider().install_default();
    HttpFacts::new(&format!("{}/api/", server.uri()), "tok_marketplace", timeout).unwrap()
}

#[tokio::test]
async fn a_lookup_sends_every_reference_with_the_bearer_token_and_reads_the_order() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/orders/lookup"))
        .and(header("authorization", "Bearer tok_marketplace"))
        .and(header("accept", "application/json"))
        .and(query_param("processor", "stripe"))
        .respond_with(ResponseTemplate::new(200).set_body_json(example()))
        .expect(1)
        .mount(&server)
        .await;
    let facts = source(&server, Duration::from_secs(5)).await;
    let found = facts.find_order(&lookup()).await.unwrap();
    assert_eq!(found, Some(example()));
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].url.query(),
        Some("processor=stripe&reference=A-17&reference=ch_3Ofacts17&reference=pi_3Ofacts17"),
        "the references, most specific first, each once"
    );
    assert!(requests[0].body.is_empty());
}

#[tokio::test]
async fn not_found_is_no_order_and_server_errors_and_timeouts_are_unavailable() {
    let server = MockServer::start().await;
    let facts = source(&server, Duration::from_secs(1)).await;
    Mock::given(path("/api/orders/lookup"))
        .respond_with(ResponseTemplate::new(404))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    assert_eq!(facts.find_order(&lookup()).await.unwrap(), None);

    for status in [500, 503, 429, 401] {
        server.reset().await;
        Mock::given(path("/api/orders/lookup"))
            .respond_with(ResponseTemplate::new(status))
            .mount(&server)
            .await;
        let err = facts.find_order(&lookup()).await.unwrap_err();
        assert!(matches!(err, FactsError::Unavailable(_)), "{status}: {err}");
    }

    server.reset().await;
    Mock::given(path("/api/orders/lookup"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(example())
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let err = facts.find_order(&lookup()).await.unwrap_err();
    assert!(
        matches!(&err, FactsError::Unavailable(m) if m.contains("timed out")),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_service_is_unavailable() {
    // wiremock pools its servers (a dropped one still answers 404): a port bound and released instead.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let facts = HttpFacts::new(&format!("http://127.0.0.1:{port}"), "tok", Duration::from_secs(2)).unwrap();
    let err = facts.find_order(&lookup()).await.unwrap_err();
    assert!(matches!(err, FactsError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn an_oversized_a_malformed_or_an_unrelated_answer_is_refused() {
    let server = MockServer::start().await;
    let facts = source(&server, Duration::from_secs(5)).await;

    let mut huge = serde_json::to_value(example()).unwrap();
    huge["messages"][0]["body"] = serde_json::json!("x".repeat(MAX_RESPONSE_BYTES));
    Mock::given(path("/api/orders/lookup"))
        .respond_with(ResponseTemplate::new(200).set_body_json(huge))
        .mount(&server)
        .await;
    let err = facts.find_order(&lookup()).await.unwrap_err();
    assert!(
        matches!(&err, FactsError::Malformed(m) if m.contains("more than")),
        "{err}"
    );

    server.reset().await;
    Mock::given(path("/api/orders/lookup"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"order\": 1}"))
        .mount(&server)
        .await;
    assert!(matches!(
        facts.find_order(&lookup()).await,
        Err(FactsError::Malformed(_))
    ));

    server.reset().await;
    let mut other = example();
    other.order_reference = "Z-99".into();
    other.payment_references = vec!["ch_z".into()];
    Mock::given(path("/api/orders/lookup"))
        .respond_with(ResponseTemplate::new(200).set_body_json(other))
        .mount(&server)
        .await;
    let err = facts.find_order(&lookup()).await.unwrap_err();
    assert!(
        matches!(&err, FactsError::Malformed(m) if m.contains("none of the references")),
        "{err}"
    );
}

#[tokio::test]
async fn the_http_source_records_nothing() {
    let server = MockServer::start().await;
    let facts = source(&server, Duration::from_secs(5)).await;
    let err = facts.record_order(example(), chrono::Utc::now()).await.unwrap_err();
    assert!(matches!(err, FactsError::ReadOnly("http")), "{err}");
    assert!(server.received_requests().await.unwrap().is_empty());
}
