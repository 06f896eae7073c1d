//! The DingTalk custom-robot receiver: signing, message layout, the idempotency key and the
//! HTTP call.

pub mod client;
pub mod message;
pub mod msg_uuid;
mod sections;
pub mod sign;
mod words;
