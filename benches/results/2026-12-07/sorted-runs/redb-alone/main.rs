use redb::{Database, Durability, TableDefinition};
use rand::RngCore;
fn cpu() -> f64 { let mut t = libc::timespec{tv_sec:0,tv_nsec:0}; unsafe{libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID,&mut t)}; t.tv_sec as f64 + t.tv_nsec as f64*1e-9 }
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let total: usize = a[1].parse().unwrap();     // receipts to insert
    let batch: usize = a[2].parse().unwrap();     // receipts per commit
    let cap: usize = a[3].parse().unwrap();       // receipts per table
    let cache: usize = a.get(4).map(|s| s.parse().unwrap()).unwrap_or(32);
    let dir = std::env::temp_dir().join(format!("idxexp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("x.redb");
    let db = redb::Builder::new().set_cache_size(cache<<20).create(&path).unwrap();
    let mut rng = rand::thread_rng();
    let val = vec![7u8; 60];
    let mut done = 0usize; let mut tbl = 0usize; let mut in_tbl = 0usize;
    let c0 = cpu(); let t0 = std::time::Instant::now();
    let mut last = c0; let mut lastn = 0;
    while done < total {
        let mut keys: Vec<[u8;32]> = (0..batch).map(|_| { let mut k=[0u8;32]; rng.fill_bytes(&mut k); k }).collect();
        keys.sort_unstable();
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(Durability::None).unwrap();
        {
            let mut i = 0;
            while i < keys.len() {
                if in_tbl >= cap { tbl += 1; in_tbl = 0; }
                let name = format!("t{tbl}");
                let def: TableDefinition<&[u8;32], &[u8]> = TableDefinition::new(&name);
                let mut t = tx.open_table(def).unwrap();
                let n = (cap - in_tbl).min(keys.len() - i);
                for k in &keys[i..i+n] { t.insert(k, val.as_slice()).unwrap(); }
                i += n; in_tbl += n;
            }
        }
        tx.commit().unwrap();
        done += batch;
        if done - lastn >= total/4 { let c = cpu(); eprintln!("  at {done}: {:.2} us/receipt", (c-last)*1e6/((done-lastn) as f64)); last = c; lastn = done; }
    }
    let c = cpu() - c0;
    println!("total={total} batch={batch} cap={cap} cache={cache}MiB: {:.2} us cpu/receipt, wall {:.1}s, file {} MB", c*1e6/total as f64, t0.elapsed().as_secs_f64(), std::fs::metadata(&path).unwrap().len()>>20);
    std::fs::remove_dir_all(&dir).unwrap();
}
