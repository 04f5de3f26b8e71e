/**
 * What every Kafka client of this process adds to its librdkafka configuration: the
 * security settings (TLS, SASL) parsed once from the environment (env.ts, kafkaSecurity).
 * Set once at start-up by the CLI, before any client is made; empty means plaintext.
 * Holds a password where SASL is on: never log it.
 */
let security: Record<string, string> = {};

export function configureKafkaClients(props: Record<string, string>): void {
  security = { ...props };
}

export function kafkaClientProps(): Record<string, string> {
  return security;
}
