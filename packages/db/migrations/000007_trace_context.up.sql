-- Sluice core: the writer's trace context with each change.
--
-- The capture trigger (000004_change_capture) copies the transaction's `sluice.trace_id`
-- setting into change_log.trace_id. The Database sets it, in the one settings statement that
-- opens every request transaction, to a full W3C traceparent (version-traceid-spanid-flags) of
-- the writing statement's or call's span, so that the events service can deliver it on each
-- ChangeEvent and a subscriber can link (or parent) its processing to the write. Without a span
-- of its own (tracing off), the writer stores the caller's traceparent, or a bare 32-digit trace
-- id when that is all it has. The column keeps its name and type; only what it holds is wider.
comment on column sluice.change_log.trace_id is 'W3C traceparent of the writing statement or call (version-traceid-spanid-flags), or a bare trace id; null without one. Set through sluice.trace_id.';
