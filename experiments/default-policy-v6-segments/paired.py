"""Paired fresh-seed comparison of two compare folders (same tasks, seeds): per task the mean
episode return over run seeds task seed + LO..HI, then the median and mean of B − A over tasks
with bootstrap 95% intervals (2000 resamples of tasks, fixed RNG seed).
    python3 experiments/default-policy-v6-segments/paired.py A B LO HI
"""
import gzip, json, os, random, statistics, sys
from collections import defaultdict
def load(folder, lo, hi):
    path=os.path.join(folder,"results.jsonl")
    lines=open(path) if os.path.exists(path) else gzip.open(path+".gz","rt")
    recs=[json.loads(l) for l in lines]
    first=defaultdict(lambda: 1<<60)
    for r in recs: first[r["task_id"]]=min(first[r["task_id"]],r["seed"])
    out=defaultdict(list)
    for r in recs:
        k=r["seed"]-first[r["task_id"]]
        if lo<=k<=hi: out[r["task_id"]].append(r["episode_return"])
    return {t:statistics.mean(v) for t,v in out.items()}
a,b,lo,hi=sys.argv[1],sys.argv[2],int(sys.argv[3]),int(sys.argv[4])
A,B=load(a,lo,hi),load(b,lo,hi)
d=[B[t]-A[t] for t in A]
rng=random.Random(0)
meds=sorted(statistics.median(rng.choices(d,k=len(d))) for _ in range(2000))
means=sorted(statistics.mean(rng.choices(d,k=len(d))) for _ in range(2000))
print(f"seeds +{lo}..{hi}: {len(d)} tasks; median diff (B-A) {statistics.median(d):+.4f} 95% CI [{meds[50]:+.4f}, {meds[1949]:+.4f}]; mean diff {statistics.mean(d):+.4f} CI [{means[50]:+.4f}, {means[1949]:+.4f}]; B better on {sum(x>0 for x in d)}/{len(d)}")
