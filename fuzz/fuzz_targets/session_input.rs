//! Any bytes a peer sends into a live session end it with a result or an error, never a
//! panic, and leave every stored record readable.
#![no_main]

use crmsync::sync::{SyncOptions, sync};
use crmsync::{Engine, EngineOptions, NewRecord, RecordType};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex, split};

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut options = EngineOptions::default();
        options.store.workspace = Some(uuid::Uuid::nil());
        let engine = Engine::in_memory_with(options).expect("engine");
        engine
            .create(NewRecord::new(RecordType::Company).with("name", "Acme"))
            .expect("record");
        let (x, y) = duplex(1 << 16);
        let (xr, xw) = split(x);
        let (mut yr, mut yw) = split(y);
        let peer = async {
            let _ = yw.write_all(data).await;
            let _ = yw.shutdown().await;
            let mut sink = Vec::new();
            let _ = yr.read_to_end(&mut sink).await;
        };
        let sync_options = SyncOptions {
            idle_timeout: std::time::Duration::from_millis(50),
            ..SyncOptions::default()
        };
        let _ = tokio::join!(sync(&engine, xr, xw, &sync_options), peer);
        for (id, _) in engine.store().all_heads().expect("heads") {
            engine
                .store()
                .get(id)
                .expect("row reads")
                .expect("row exists");
        }
    });
});
