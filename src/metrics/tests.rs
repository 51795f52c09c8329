//! Unit tests of the internal forms.
