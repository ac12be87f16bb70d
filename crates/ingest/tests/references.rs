//! The references each processor's notification carries, which the link step tries to find the order by.

use serde_json::{Value, json};
use verdict_domain::facts::{ReferenceKind as K, TaggedReference};
use verdict_ingest::{braintree_payload, parse_adyen, parse_braintree, parse_paypal, parse_stripe};

use crate::{fixture, fixture_str, only_dispute};

fn refs(pairs: &[(K, &str)]) -> Vec<TaggedReference> {
    pairs.iter().map(|(k, v)| TaggedReference::new(*k, *v)).collect()
}

#[test]
fn stripe_carries_the_charge_of_the_fixture() {
    let n = only_dispute(
        parse_stripe(&fixture(
            "stripe/unofficial-stripe-ruby-mock/event-charge.dispute.created.json",
        ))
        .unwrap(),
    );
    assert_eq!(n.references, refs(&[(K::Charge, "ch_000000000000000000000000")]));
}

#[test]
fn stripe_carries_the_payment_intent_and_the_order_id_of_the_metadata() {
    let mut event: Value = serde_json::from_slice(&fixture(
        "stripe/unofficial-stripe-ruby-mock/event-charge.dispute.created.json",
    ))
    .unwrap();
    event["data"]["object"]["payment_intent"] = json!("pi_3Ofacts17");
    event["data"]["object"]["metadata"] = json!({"order_id": "A-17"});
    let n = only_dispute(parse_stripe(&serde_json::to_vec(&event).unwrap()).unwrap());
    assert_eq!(
        n.references,
        refs(&[
            (K::OrderId, "A-17"),
            (K::Charge, "ch_000000000000000000000000"),
            (K::PaymentIntent, "pi_3Ofacts17"),
        ])
    );
    assert_eq!(n.order_reference.as_deref(), Some("A-17"));
}

#[test]
fn stripe_reads_an_expanded_charge_for_its_payment_intent_and_order_id() {
    let mut event: Value = serde_json::from_slice(&fixture(
        "stripe/unofficial-stripe-ruby-mock/event-charge.dispute.created.json",
    ))
    .unwrap();
    event["data"]["object"]["charge"] =
        json!({"id": "ch_x", "payment_intent": "pi_x", "metadata": {"order_id": "B-2"}});
    event["data"]["object"]["metadata"] = json!({});
    let n = only_dispute(parse_stripe(&serde_json::to_vec(&event).unwrap()).unwrap());
    assert_eq!(
        n.references,
        refs(&[(K::OrderId, "B-2"), (K::Charge, "ch_x"), (K::PaymentIntent, "pi_x")])
    );
}

#[test]
fn adyen_carries_the_merchant_reference_and_the_psp_references() {
    let n = only_dispute(parse_adyen(&fixture("adyen/openapi-webhooks-v1-chargeback.json")).unwrap());
    assert_eq!(
        n.references,
        refs(&[
            (K::MerchantReference, "YOUR_MERCHANT_REFERENCE"),
            (K::MerchantReference, "shopperReferenceTest"),
            (K::PspReference, "9913140798220028"),
            (K::PspReference, "8636172945333378"),
        ])
    );
    assert_eq!(n.order_reference.as_deref(), Some("YOUR_MERCHANT_REFERENCE"));
    assert_eq!(n.payment_reference.as_deref(), Some("9913140798220028"));
}

#[test]
fn paypal_carries_the_seller_transaction_and_the_invoice_and_custom_ids() {
    let n = only_dispute(
        parse_paypal(&fixture(
            "paypal/unofficial-mirror/customer-dispute-created-sample.json",
        ))
        .unwrap(),
    );
    assert_eq!(n.references, refs(&[(K::TransactionId, "00D10444LD479031K")]));

    let mut event: Value = serde_json::from_slice(&fixture(
        "paypal/unofficial-mirror/customer-dispute-created-sample.json",
    ))
    .unwrap();
    event["resource"]["disputed_transactions"][0]["invoice_number"] = json!("INV-17");
    event["resource"]["disputed_transactions"][0]["custom"] = json!("A-17");
    let n = only_dispute(parse_paypal(&serde_json::to_vec(&event).unwrap()).unwrap());
    assert_eq!(
        n.references,
        refs(&[
            (K::InvoiceId, "INV-17"),
            (K::CustomId, "A-17"),
            (K::TransactionId, "00D10444LD479031K"),
        ])
    );
    assert_eq!(n.order_reference.as_deref(), Some("INV-17"));
}

#[test]
fn braintree_carries_the_transaction_id_and_the_order_id() {
    let xml = fixture_str("braintree/ruby-sdk-sample-notification-dispute_opened.xml");
    let n = only_dispute(parse_braintree(&braintree_payload(&xml)).unwrap());
    let transaction = n.payment_reference.clone().unwrap();
    assert_eq!(
        n.references,
        refs(&[(K::TransactionId, &transaction)]),
        "order-id is nil in the fixture"
    );

    let xml = xml.replacen("<order-id nil=\"true\"/>", "<order-id>A-17</order-id>", 1);
    let n = only_dispute(parse_braintree(&braintree_payload(&xml)).unwrap());
    assert_eq!(
        n.references,
        refs(&[(K::OrderId, "A-17"), (K::TransactionId, &transaction)])
    );
}
