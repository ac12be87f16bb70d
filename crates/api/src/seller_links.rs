//! Signed, expiring upload links for sellers: a seller has no account in Verdict, so the link itself is the
//! credential. `POST /seller-uploads/{token}` takes one evidence file for the dispute the token names, until the
//! token expires; the token is `<dispute id>.<expiry, unix seconds>.<hex HMAC-SHA256(secret, "<dispute id>.<expiry>")>`,
//! so it cannot be forged or extended without the secret, and names nothing personal. Analysts make a link
//! with `createSellerUploadLink` and send it in a seller message.

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use verdict_domain::DisputeId;

use crate::error::ApiError;

/// The secret links are signed with and how long a link lasts (`[sellers] upload_secret`,
/// `upload_link_hours`).
#[derive(Clone)]
pub struct SellerLinks {
    secret: Vec<u8>,
    pub lifetime: Duration,
}

impl std::fmt::Debug for SellerLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SellerLinks")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl SellerLinks {
    /// Links signed with `secret` (at least 32 bytes), valid for `lifetime`.
    pub fn new(secret: &[u8], lifetime: Duration) -> Result<Self, String> {
        if secret.len() < 32 {
            return Err("the seller upload secret must be at least 32 bytes".into());
        }
        if lifetime <= Duration::zero() {
            return Err("a seller upload link must last a positive time".into());
        }
        Ok(Self {
            secret: secret.to_vec(),
            lifetime,
        })
    }

    fn signature(&self, message: &str) -> Result<Hmac<Sha256>, ApiError> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .map_err(|_| ApiError::Internal("the seller upload secret cannot key an HMAC".into()))?;
        mac.update(message.as_bytes());
        Ok(mac)
    }

    /// A token for uploads to `dispute` until `now + lifetime`, and that time.
    pub fn sign(&self, dispute: DisputeId, now: DateTime<Utc>) -> Result<(String, DateTime<Utc>), ApiError> {
        let expires = now + self.lifetime;
        let message = format!("{dispute}.{}", expires.timestamp());
        let tag = hex::encode(self.signature(&message)?.finalize().into_bytes());
        Ok((format!("{message}.{tag}"), expires))
    }

    /// The dispute a token lets a seller upload to, if it is genuine and not expired at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<DisputeId, ApiError> {
        let refused = || ApiError::Unauthenticated("this upload link is not valid".into());
        let mut parts = token.trim().rsplitn(2, '.');
        let (Some(tag), Some(message)) = (parts.next(), parts.next()) else {
            return Err(refused());
        };
        let tag = hex::decode(tag).map_err(|_| refused())?;
        self.signature(message)?.verify_slice(&tag).map_err(|_| refused())?;
        let (dispute, expires) = message.split_once('.').ok_or_else(refused)?;
        let expires: i64 = expires.parse().map_err(|_| refused())?;
        if now.timestamp() >= expires {
            return Err(ApiError::Unauthenticated(
                "this upload link has expired; ask the marketplace for a new one".into(),
            ));
        }
        dispute.parse().map_err(|_| refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> SellerLinks {
        SellerLinks::new(&[7_u8; 32], Duration::hours(72)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_link_opens_its_dispute_until_it_expires_and_cannot_be_forged() {
        let links = links();
        let now = Utc::now();
        let dispute = DisputeId::new_v7();
        let (token, expires) = links.sign(dispute, now).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(expires, now + Duration::hours(72));
        assert_eq!(links.verify(&token, now).ok(), Some(dispute));
        assert!(links.verify(&token, expires).is_err(), "expired");
        // Another dispute or a later expiry under the same tag.
        let (_, rest) = token.split_once('.').unwrap_or_default();
        let other = format!("{}.{rest}", DisputeId::new_v7());
        assert!(links.verify(&other, now).is_err());
        let tag = token.rsplit('.').next().unwrap_or_default();
        let extended = format!("{dispute}.{}.{tag}", (expires + Duration::days(30)).timestamp());
        assert!(links.verify(&extended, now).is_err());
        let other_secret = SellerLinks::new(&[8_u8; 32], Duration::hours(72)).unwrap_or_else(|e| panic!("{e}"));
        assert!(other_secret.verify(&token, now).is_err());
        assert!(links.verify("garbage", now).is_err());
        assert!(SellerLinks::new(b"short", Duration::hours(1)).is_err());
    }
}
