//! Links: every URL from text and HTML, decoded redirectors, registrable
//! domains, blocklist files that reload while the server runs, and the
//! phishing net.
