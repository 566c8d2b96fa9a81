//! Virus scanning through clamd's INSTREAM protocol (unix or TCP socket).
//! Fail-closed: an unreachable or slow clamd tempfails the message.
