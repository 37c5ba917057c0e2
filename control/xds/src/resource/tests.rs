use super::*;

fn any(type_url: &str, value: &[u8]) -> Any {
    Any {
        type_url: type_url.into(),
        value: value.to_vec(),
    }
}

fn response(resources: Vec<Resource>) -> SotwResponse {
    SotwResponse {
        version_info: "0123456789abcdef".into(),
        type_url: type_url::ENDPOINT.into(),
        nonce: "42".into(),
        resources: resources.into(),
    }
}

/// The chunks are one gRPC message whose bytes prost decodes to the very response prost
/// would have encoded, with a prefix giving their exact length.
#[test]
fn the_chunks_are_the_grpc_message_of_the_response() {
    let big = vec![7u8; 300_000];
    for resources in [
        Vec::new(),
        vec![Resource::new("a", any(type_url::ENDPOINT, b"one"))],
        vec![
            Resource::new("a", any(type_url::ENDPOINT, b"")),
            Resource::new("b", any(type_url::ENDPOINT, &big)),
            Resource::new("c", any(type_url::ENDPOINT, b"three")),
        ],
    ] {
        let response = response(resources);
        let chunks = response.grpc_chunks().unwrap();
        // Small entries ride in the chunk before them; a large one is a chunk of its own.
        let large = response
            .resources
            .iter()
            .filter(|r| r.entry.len() >= SHARED_ENTRY)
            .count();
        let trailing_small = response
            .resources
            .last()
            .is_some_and(|r| r.entry.len() < SHARED_ENTRY && large > 0);
        assert_eq!(chunks.len(), 1 + large + usize::from(trailing_small));
        let wire: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(wire[0], 0, "not compressed");
        let length = u32::from_be_bytes([wire[1], wire[2], wire[3], wire[4]]) as usize;
        assert_eq!(length, wire.len() - 5);
        let decoded = DiscoveryResponse::decode(&wire[5..]).unwrap();
        assert_eq!(decoded, response.to_message());
        assert_eq!(
            response.to_message().encoded_len(),
            length,
            "the same size as prost's own encoding"
        );
    }
}

/// Empty fields are left out, as prost leaves them out.
#[test]
fn empty_fields_are_left_out() {
    let response = SotwResponse {
        version_info: String::new(),
        type_url: type_url::CLUSTER.into(),
        nonce: String::new(),
        resources: Vec::new().into(),
    };
    let chunks = response.grpc_chunks().unwrap();
    assert_eq!(
        &chunks[0][5..],
        response.to_message().encode_to_vec().as_slice()
    );
}

/// Streams share a resource's encoding: a clone of a response points at the same bytes.
#[test]
fn every_stream_sends_the_same_resource_bytes() {
    let resource = Resource::new("a", any(type_url::ENDPOINT, &[1u8; SHARED_ENTRY]));
    let one = response(vec![resource.clone()]).grpc_chunks().unwrap();
    let two = response(vec![resource]).grpc_chunks().unwrap();
    assert_eq!(one[1].as_ptr(), two[1].as_ptr());
    // A small resource is copied into the response's one chunk.
    let small = Resource::new("b", any(type_url::ENDPOINT, &[2u8; 100]));
    assert_eq!(response(vec![small]).grpc_chunks().unwrap().len(), 1);
}
