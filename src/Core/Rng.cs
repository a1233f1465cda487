namespace MLNet.ConvNet;

/// <summary>
/// A small seeded random generator (xoshiro256**, seeded through SplitMix64) whose whole state is four
/// 64-bit words, so a checkpoint can save and restore it exactly.
/// </summary>
/// <remarks>
/// <see cref="System.Random"/> is not used because its state cannot be saved. Every draw is defined
/// here bit for bit (no platform-dependent math except <c>Math.Log</c>, <see cref="Math.Sqrt"/>
/// and <see cref="Math.Cos"/> in <see cref="NextNormal"/>), so the same seed gives the same sequence
/// on any machine running the same .NET.
/// </remarks>
public sealed class Rng
{
    private ulong _s0, _s1, _s2, _s3;

    /// <summary>A generator whose sequence is a function of <paramref name="seed"/> only.</summary>
    public Rng(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix64(ref x); _s1 = SplitMix64(ref x); _s2 = SplitMix64(ref x); _s3 = SplitMix64(ref x);
    }

    /// <summary>The four state words (a copy); <see cref="SetState"/> restores them.</summary>
    public ulong[] GetState() => [_s0, _s1, _s2, _s3];

    /// <summary>Restores a state returned by <see cref="GetState"/>.</summary>
    public void SetState(ReadOnlySpan<ulong> state)
    {
        if (state.Length != 4) throw new ArgumentException($"An Rng state has 4 words; got {state.Length}.", nameof(state));
        if ((state[0] | state[1] | state[2] | state[3]) == 0) throw new ArgumentException("An all-zero Rng state is invalid.", nameof(state));
        (_s0, _s1, _s2, _s3) = (state[0], state[1], state[2], state[3]);
    }

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform integer in [0, <paramref name="n"/>), without modulo bias (rejection sampling).</summary>
    public int NextInt(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), n, "n must be positive.");
        ulong bound = (ulong)n;
        ulong limit = ulong.MaxValue - ulong.MaxValue % bound; // draws at or above this would favour small values
        ulong r;
        do r = NextUInt64(); while (r >= limit);
        return (int)(r % bound);
    }

    /// <summary>Standard normal (Box-Muller, one value per call).</summary>
    public double NextNormal()
    {
        double u1 = 1.0 - NextDouble(); // (0, 1], so the log is finite
        double u2 = NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    /// <summary>Shuffles <paramref name="items"/> in place (Fisher-Yates).</summary>
    public void Shuffle<T>(Span<T> items)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>A random permutation of 0..n-1.</summary>
    public int[] Permutation(int n)
    {
        var p = new int[n];
        for (int i = 0; i < n; i++) p[i] = i;
        Shuffle(p.AsSpan());
        return p;
    }

    /// <summary>SplitMix64: a well-mixed 64-bit value from a counter; also used to derive per-step seeds.</summary>
    public static ulong SplitMix64(ref ulong x) => Mix64(x += GoldenGamma);

    /// <summary>SplitMix64's increment: 2^64 divided by the golden ratio, odd.</summary>
    public const ulong GoldenGamma = 0x9E3779B97F4A7C15UL;

    /// <summary>SplitMix64's finalizer: a bijective 64-bit mixer (used alone by counter-based generators such as dropout's).</summary>
    public static ulong Mix64(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A seed derived from (<paramref name="seed"/>, <paramref name="counter"/>): distinct counters give unrelated seeds.</summary>
    public static ulong Mix(ulong seed, ulong counter)
    {
        ulong x = seed ^ (counter * 0xD1B54A32D192ED03UL);
        return SplitMix64(ref x);
    }
}
