import json, sys, collections
for f in sys.argv[1:]:
    r = json.load(open(f))
    for p in r['configurations'][0]['points']:
        agg = collections.defaultdict(float)
        for pr in p['processes']:
            agg[pr['module']] += pr['cpu_percent_mean'] / 100.0
        ex = p['executed_tps']
        print(f.split('/')[0], p['offered_tps'], ' '.join(f"{m}={1e6*v/ex:.1f}" for m, v in sorted(agg.items())), f"total={1e6*sum(agg.values())/ex:.1f} µs/tx")
