import { parseEnv, type EnvConfig } from '../config/env.ts';
import { loadTopology, type Topology } from '../config/topology.ts';
import { configureKafkaClients } from '../kafka/client-config.ts';

/**
 * The configuration every command starts from: the environment, the topology file, and
 * the addresses they resolve to. A module of its own so that the commands and main.ts,
 * which dispatches to them, do not import each other.
 */
export const LOCAL_STACK = {
  brokers: '127.0.0.1:19092',
  controlUrl: 'postgres://sync_user:sync_pass@127.0.0.1:55432/sync_db',
};

export interface Loaded {
  env: EnvConfig;
  topology: Topology;
  brokers: string;
  controlUrl: string;
  redisUrl: string | undefined;
}

export function loadConfig(): Loaded {
  const env = parseEnv();
  configureKafkaClients(env.kafkaSecurity);
  const topology = loadTopology(env.configFile);
  return {
    env,
    topology,
    brokers: env.kafkaBrokers ?? topology.kafka.bootstrap ?? LOCAL_STACK.brokers,
    controlUrl: env.controlUrl ?? topology.control.url ?? LOCAL_STACK.controlUrl,
    redisUrl: env.redisUrl ?? topology.redis.url,
  };
}
