"""Delivery pipelines besides the SDK spool: the transactional outbox and its relay,
trigger capture of row changes, and broker transports and consumers."""
