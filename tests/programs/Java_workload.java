// Java_workload.java - a multi-threaded Java workload for tests/programs/java.sh.
// Deterministic output: per-task checksums computed from seeded data.
import java.nio.ByteBuffer;
import java.util.*;
import java.util.concurrent.*;
import java.util.zip.CRC32;
import java.util.zip.Deflater;
import java.util.zip.Inflater;

public class Java_workload {
    static long task(int seed) throws Exception {
        Random r = new Random(seed);
        HashMap<String, StringBuilder> m = new HashMap<>();
        long h = 0;
        for (int i = 0; i < 100000; i++) {
            String k = "k" + r.nextInt(4000);
            StringBuilder sb = m.computeIfAbsent(k, x -> new StringBuilder());
            sb.append(i % 97);
            if (sb.length() > 300) { h += sb.toString().hashCode(); m.remove(k); }
        }
        // Direct buffers and zlib: native memory from malloc.
        CRC32 crc = new CRC32();
        for (int i = 0; i < 50; i++) {
            ByteBuffer b = ByteBuffer.allocateDirect(1 + r.nextInt(200000));
            while (b.hasRemaining()) b.put((byte) r.nextInt(16));
            b.flip();
            byte[] a = new byte[b.remaining()];
            b.get(a);
            Deflater d = new Deflater();
            d.setInput(a);
            d.finish();
            byte[] out = new byte[a.length + 1024];
            int n = d.deflate(out);
            d.end();
            Inflater inf = new Inflater();
            inf.setInput(out, 0, n);
            byte[] back = new byte[a.length];
            int got = inf.inflate(back);
            inf.end();
            if (got != a.length || !Arrays.equals(a, back)) throw new IllegalStateException("zlib round trip");
            crc.update(back);
        }
        return h ^ crc.getValue() ^ m.size();
    }

    public static void main(String[] args) throws Exception {
        ExecutorService ex = Executors.newFixedThreadPool(8);
        List<Future<Long>> fs = new ArrayList<>();
        for (int t = 0; t < 24; t++) {
            final int s = t;
            fs.add(ex.submit(() -> task(s)));
        }
        long all = 0;
        for (int t = 0; t < fs.size(); t++) {
            long v = fs.get(t).get();
            System.out.println("task " + t + " " + Long.toHexString(v));
            all ^= v;
        }
        ex.shutdown();
        System.out.println("all " + Long.toHexString(all));
    }
}
