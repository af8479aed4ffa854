//! OTLP/gRPC on the real binary, with tonic's client.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;

use crate::support::*;

fn with_key<T>(msg: T, key: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {key}")).unwrap(),
    );
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_export_is_authenticated_stored_and_bounded() {
    let server = tokio::task::spawn_blocking(TestServer::start)
        .await
        .unwrap();
    let mut client = TraceServiceClient::connect(server.otlp_grpc.clone())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip);
    let fixture_req =
        ExportTraceServiceRequest::decode(fixture("openinference-anthropic.pb").as_slice())
            .unwrap();

    let denied = client
        .export(tonic::Request::new(fixture_req.clone()))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);

    let ok = client
        .export(with_key(fixture_req.clone(), &server.key))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.partial_success.is_none());
    let (key, api) = (server.key.clone(), server.api.clone());
    let trace = reqwest::Client::new()
        .get(format!("{api}/api/v1/traces?provider=anthropic"))
        .header("x-vigil-api-key", &key)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(trace["traces"][0]["span_count"], 5);

    // Partial success over gRPC too.
    let mut bad = request(vec![
        span([2; 16], 1, "ok", vec![]),
        span([2; 16], 2, "bad", vec![]),
    ]);
    bad.resource_spans[0].scope_spans[0].spans[1].span_id = vec![0; 8];
    let resp = client
        .export(with_key(bad, &server.key))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 1);

    // Above the 4 MiB default message size → RESOURCE_EXHAUSTED, with no retry advice.
    let attrs = (0..60_000).map(|i| kv(&format!("a{i}"), sv("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"))).collect();
    let mut plain = TraceServiceClient::connect(server.otlp_grpc.clone())
        .await
        .unwrap()
        .max_encoding_message_size(64 * 1024 * 1024);
    let huge = plain
        .export(with_key(
            request(vec![span([3; 16], 1, "huge", attrs)]),
            &server.key,
        ))
        .await
        .unwrap_err();
    assert_eq!(huge.code(), tonic::Code::ResourceExhausted, "{huge:?}");
    // The server is still serving.
    assert!(plain
        .export(with_key(fixture_req, &server.key))
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_overload_is_unavailable_with_retry_info() {
    use tonic_types::StatusExt;
    let server = tokio::task::spawn_blocking(|| {
        TestServer::start_with(&[], &[("VIGIL_STORAGE__MAX_PENDING_SPANS", "100")])
    })
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for w in 0..16u8 {
        let (endpoint, key) = (server.otlp_grpc.clone(), server.key.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = TraceServiceClient::connect(endpoint)
                .await
                .unwrap()
                .max_encoding_message_size(64 * 1024 * 1024);
            let spans = (1..=3000)
                .map(|i| {
                    span(
                        [w + 1; 16],
                        i,
                        "step",
                        vec![kv("payload", sv(&"x".repeat(200)))],
                    )
                })
                .collect();
            client.export(with_key(request(spans), &key)).await
        }));
    }
    let mut unavailable = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(
                    status.get_details_retry_info().is_some(),
                    "UNAVAILABLE carries RetryInfo"
                );
                unavailable += 1;
            }
        }
    }
    assert!(
        unavailable > 0,
        "16 concurrent 3000-span exports against a 100-span queue should be refused at least once"
    );
}
