//! Sender checks: forward-confirmed rDNS, HELO validity, SPF, DKIM, DMARC,
//! ARC, DNS blocklists, and the Authentication-Results header (RFC 8601).
