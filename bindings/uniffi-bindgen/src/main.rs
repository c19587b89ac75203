//! `uniffi-bindgen`: generates the Kotlin, Swift and Python bindings of `crmsync-ffi` from the
//! compiled library. Run through `bindings/generate.sh`, or directly:
//!
//! ```sh
//! cargo run -p crmsync-uniffi-bindgen --bin uniffi-bindgen -- \
//!     generate --library target/debug/libcrmsync_ffi.so --language kotlin --out-dir DIR
//! ```

fn main() {
    uniffi::uniffi_bindgen_main();
}
