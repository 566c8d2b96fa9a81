//! The trainable statistical classifier over words, bigrams, link hosts
//! and selected headers.
