//! The DingTalk custom-robot receiver: signing, message layout and the HTTP call.

pub mod client;
pub mod message;
mod sections;
mod words;
pub mod sign;
