using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Transforms;

/// <summary>A view with a schema and no rows: what the ONNX twin is fitted on (it only checks the schema).</summary>
internal sealed class EmptyDataView(DataViewSchema schema) : IDataView
{
    public DataViewSchema Schema { get; } = schema;
    public bool CanShuffle => false;
    public long? GetRowCount() => 0;
    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) => new Cursor(Schema);
    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) => [new Cursor(Schema)];

    private sealed class Cursor(DataViewSchema schema) : DataViewRowCursor
    {
        public override DataViewSchema Schema { get; } = schema;
        public override long Position => -1;
        public override long Batch => 0;
        public override bool MoveNext() => false;
        public override bool IsColumnActive(DataViewSchema.Column column) => true;
        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) =>
            (ref TValue value) => throw new InvalidOperationException("An empty view has no rows.");
        public override ValueGetter<DataViewRowId> GetIdGetter() =>
            (ref DataViewRowId value) => throw new InvalidOperationException("An empty view has no rows.");
    }
}
