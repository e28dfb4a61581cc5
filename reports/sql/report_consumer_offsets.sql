-- The consumer's next offset per Kafka topic and partition, as committed with the events (the
-- database, not Kafka's group offsets, is the truth), and when it last moved.
CREATE VIEW report_consumer_offsets AS
SELECT
    topic,
    "partition",
    next_offset,
    updated_at
FROM kafka_offsets;
