import { readFileSync } from 'node:fs';
import { metrics } from '@sluice/observability';
import { describe, expect, it } from 'vitest';
// The events and webhooks services register their metrics on the process registry when loaded.
import '@sluice/events-service';
import '@sluice/webhooks-service';

// docs/grafana/sluice-dashboard.json stays importable and true: it parses, its panels query the
// two data source variables, every metric it charts is one the services register, and its Loki
// queries select streams by the static labels only.

interface Target {
  readonly expr: string;
  readonly datasource: { readonly type: string; readonly uid: string };
}
interface Panel {
  readonly type: string;
  readonly title: string;
  readonly targets?: readonly Target[];
}

const dashboard = JSON.parse(
  readFileSync(new URL('../../../docs/grafana/sluice-dashboard.json', import.meta.url), 'utf8'),
) as { panels: Panel[]; templating: { list: { name: string; type: string; query: unknown }[] } };
const targets = dashboard.panels.flatMap((p) => p.targets ?? []);

describe('Grafana dashboard', () => {
  it('has a Prometheus and a Loki data source variable, used by every query', () => {
    const sources = dashboard.templating.list.filter((v) => v.type === 'datasource');
    expect(sources.map((v) => [v.name, v.query])).toEqual([
      ['datasource', 'prometheus'],
      ['loki', 'loki'],
    ]);
    // Grafana's own variable syntax, not a JavaScript template.
    const uid = (variable: string) => `\${${variable}}`;
    for (const t of targets) {
      expect(t.datasource).toEqual(
        t.datasource.type === 'loki'
          ? { type: 'loki', uid: uid('loki') }
          : { type: 'prometheus', uid: uid('datasource') },
      );
    }
  });

  it('charts only metrics the services register', () => {
    const names = new Set<string>();
    for (const t of targets.filter((t) => t.datasource.type === 'prometheus')) {
      for (const [, name] of t.expr.matchAll(/([a-z_:][a-z0-9_:]*)\{/g))
        names.add(name!.replace(/_bucket$/, ''));
    }
    expect([...names].sort()).toEqual([
      'db_breaker_state',
      'db_pool_connections',
      'db_pool_idle_connections',
      'db_pool_waiting_requests',
      'events_buffered_events',
      'events_change_log_rows',
      'events_delivery_lag_seconds',
      'events_subscribers',
      'grpc_server_handled_total',
      'grpc_server_handling_seconds',
      'grpc_server_started_total',
      'limit_in_use',
      'limit_refused_total',
      'log_lines_dropped_total',
      'nodejs_eventloop_lag_p99_seconds',
      'process_resident_memory_bytes',
      'webhooks_breakers_open',
      'webhooks_deliveries_total',
      'webhooks_delivery_lag_seconds',
      'webhooks_endpoint_events_total',
      'webhooks_fanout_lag_seconds',
      'webhooks_inbound_rejected_total',
      'webhooks_inbound_requests_total',
    ]);
    const missing = [...names].filter((name) => metrics.getSingleMetric(name) === undefined);
    expect(missing).toEqual([]);
  });

  it('selects Loki streams by static labels only', () => {
    const loki = targets.filter((t) => t.datasource.type === 'loki');
    expect(loki.length).toBeGreaterThanOrEqual(2);
    for (const t of loki) {
      const selector = /\{([^}]*)\}/.exec(t.expr)?.[1] ?? '';
      const labels = [...selector.matchAll(/([a-z_]+)\s*(=~|!=|!~|=)/g)].map((m) => m[1]);
      expect(labels.every((l) => ['app', 'service', 'env', 'level'].includes(l!))).toBe(true);
    }
  });
});
