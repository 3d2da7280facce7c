//! A publication: one message on its way to rooms or connections, with its raw-mode frame
//! encoded once. The `roomcast.v1` frame is encoded from it once per room publication (it holds
//! the room and the offset), never per recipient.

use bytes::Bytes;

use crate::frame::{self, OpCode};

/// A message to deliver, as the raw-mode frame that carries it.
#[derive(Debug, Clone)]
pub struct Publication {
    frame: Bytes,
    header_len: usize,
    text: bool,
}

impl Publication {
    /// A publication from an encoded, unmasked, final server frame (text or binary).
    pub fn from_frame(frame: Bytes) -> Publication {
        let text = frame[0] & 0x0f == OpCode::Text as u8;
        let (header_len, _) = frame::header_and_payload_len(&frame);
        Publication { frame, header_len, text }
    }

    /// A text publication, copying `text` once into its frame.
    pub fn text(text: &str) -> Publication {
        Publication::from_frame(frame::encode(OpCode::Text, text.as_bytes()))
    }

    /// A binary publication, copying `data` once into its frame.
    pub fn binary(data: &[u8]) -> Publication {
        Publication::from_frame(frame::encode(OpCode::Binary, data))
    }

    /// The frame raw-mode connections receive.
    pub fn raw_frame(&self) -> &Bytes {
        &self.frame
    }

    /// The payload (shares the frame's memory).
    pub fn payload(&self) -> Bytes {
        self.frame.slice(self.header_len..)
    }

    /// The payload, borrowed.
    pub fn payload_bytes(&self) -> &[u8] {
        &self.frame[self.header_len..]
    }

    /// Whether the payload is text (valid UTF-8).
    pub fn is_text(&self) -> bool {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_payload_behind_every_header_size() {
        for len in [0, 125, 126, 65535, 65536] {
            let data = vec![7u8; len];
            let publication = Publication::binary(&data);
            assert_eq!(publication.payload().len(), len);
            assert!(!publication.is_text());
        }
        let publication = Publication::text("héllo");
        assert!(publication.is_text());
        assert_eq!(&publication.payload()[..], "héllo".as_bytes());
    }
}
