-- Records that were not Stripe events: their Kafka coordinates, the reason and when they
-- arrived. The raw bytes stay in the table: a report never shows what a producer sent.
CREATE VIEW report_dead_letters AS
SELECT
    id,
    topic,
    "partition",
    "offset",
    error,
    received_at
FROM dead_letters;
