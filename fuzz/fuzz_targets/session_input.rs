//! Any bytes a peer sends into a session end it with a result or an error, never a panic, and
//! leave every stored record readable. The state machine is driven directly (no runtime, no
//! stream): what the fuzzer gives is the peer's byte stream, after a valid hello when the
//! first byte is odd so that the later phases are reached too, delivered in pieces whose sizes
//! the second byte picks.
#![no_main]

use crmsync::sync::message::Hello;
use crmsync::sync::{
    FrameDecoder, Message, PROTOCOL_VERSION, SyncMachine, SyncOptions, encode_frame,
};
use crmsync::{DeviceId, Engine, EngineOptions, ListQuery, NewRecord, RecordType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut options = EngineOptions::default();
    options.store.workspace = Some(uuid::Uuid::nil());
    let engine = Engine::in_memory_with(options).expect("engine");
    engine
        .create(NewRecord::new(RecordType::Company).with("name", "Acme"))
        .expect("record");
    let (with_hello, piece, stream) = match data {
        [a, b, rest @ ..] => (a % 2 == 1, usize::from(*b).max(1), rest),
        _ => (false, 1, data),
    };
    let mut bytes = Vec::new();
    if with_hello {
        let hello = Message::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            workspace: uuid::Uuid::nil(),
            replica: DeviceId([0; 16]),
            nonce: [1; 16],
            accepts_changes: true,
        });
        bytes.extend(encode_frame(&hello).expect("hello encodes"));
    }
    bytes.extend_from_slice(stream);
    let sync_options = SyncOptions::default();
    let mut decoder = FrameDecoder::new(sync_options.max_frame);
    let mut machine = SyncMachine::new(&engine, sync_options, [2; 16]).expect("machine");
    'session: for chunk in bytes.chunks(piece) {
        decoder.push(chunk);
        loop {
            while let Ok(Some(_)) = machine.poll_transmit() {}
            match decoder.next_message() {
                Ok(Some(message)) => {
                    if let Err(e) = machine.handle(message) {
                        machine.fail(&e);
                        break 'session;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    machine.fail(&e);
                    break 'session;
                }
            }
        }
    }
    for record_type in [RecordType::Company, RecordType::Contact, RecordType::Deal] {
        for record in engine
            .list(&ListQuery::new(record_type))
            .expect("rows read")
        {
            engine.get(record.id).expect("record reads");
        }
    }
});
