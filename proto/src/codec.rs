//! The Ingest stream's codec: prost's, with buffers sized for its messages.
//!
//! tonic gives every stream an 8 KiB encode buffer and an 8 KiB decode buffer. An Ingest
//! stream carries snapshots of one to a few KiB one way and acks of a few bytes the other, and
//! an aggregator holds one stream per sidecar: at 10 000 sidecars the default buffers alone
//! were 160 MiB. Buffers still grow for a larger message (tonic reserves what it needs).

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial encode buffer: an ack is a few bytes; a sidecar's snapshot grows it once.
const ENCODE_BUFFER: usize = 1024;
/// Initial decode buffer: a 20-component snapshot is about 1.5 KiB.
const DECODE_BUFFER: usize = 2048;
/// tonic's default: how much is encoded before yielding to the runtime.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// `tonic_prost::ProstCodec` with smaller initial buffers.
#[derive(Debug, Clone)]
pub struct SmallBuffers<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBuffers<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SmallBuffers<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(ENCODE_BUFFER, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(DECODE_BUFFER, YIELD_THRESHOLD))
    }
}
