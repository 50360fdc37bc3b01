# Share of validator-1's samples (all its threads) by what the stack passes through,
# from `perf script` of prof.sh's perf.data (all.script). Categories overlap.
import re,sys,collections
data=open(sys.argv[1]).read().split('\n\n')
names=('lamina-consensu','intake-sig','consensus-wal')
tot=0; by_thread=collections.Counter(); c=collections.Counter()
cats={'intake signature thread':lambda s,t:t.startswith('intake-sig'),
      'WAL thread':lambda s,t:t.startswith('consensus-wal'),
      'intake path (runtime threads)':lambda s,t:t.startswith('lamina-consensu') and 'Intake::' in s,
      'intake log fdatasync':lambda s,t:t.startswith('lamina-consensu') and ('wait_durable' in s or 'sync_round' in s),
      'QUIC (quinn)':lambda s,t:t.startswith('lamina-consensu') and 'quinn' in s,
      'consensus core task (CoreTask)':lambda s,t:t.startswith('lamina-consensu') and 'CoreTask' in s,
      'mempool (Mempool::)':lambda s,t:t.startswith('lamina-consensu') and 'Mempool::' in s,
      'mempool ordered':lambda s,t:t.startswith('lamina-consensu') and 'Mempool::ordered' in s,
      'mempool insert':lambda s,t:t.startswith('lamina-consensu') and 'Mempool::insert' in s,
      'dispersal (DaClient::disperse*)':lambda s,t:t.startswith('lamina-consensu') and re.search(r'DaClient::disperse|disperse_inner|disperse_to',s) is not None,
      'signatures on runtime threads (verify_batch)':lambda s,t:t.startswith('lamina-consensu') and 'verify_batch' in s}
for s in data:
    lines=s.strip().split('\n')
    if len(lines)<2: continue
    t=lines[0].split()[0]
    if not t.startswith(names): continue
    tot+=1; by_thread[t]+=1
    for k,f in cats.items():
        if f(s,t): c[k]+=1
print('validator-1 samples, all threads:',tot, dict(by_thread))
for k in cats: print(f"{100*c[k]/tot:5.1f}%  {c[k]:4}  {k}")
