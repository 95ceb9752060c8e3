// The event data of the WSO2 databridge, field for field as the receivers decode it.
// Namespaces do not travel on the wire; the Python one keeps the generated code inside pca_thrift.
namespace java org.wso2.carbon.databridge.commons.thrift.data
namespace py pca_thrift._gen.data

enum ThriftAttributeType {
    INT,
    LONG,
    FLOAT,
    DOUBLE,
    BOOL,
    STRING
}

struct ThriftAttribute {
    1: optional string name,
    2: optional ThriftAttributeType attributeType
}

// eventNum events; each takes its stream id from the strings and its time stamp from the longs, then
// one value per attribute of its stream definition from the list of the attribute's type.
struct ThriftEventBundle {
    1: optional string sessionId,
    2: optional i32 eventNum,
    3: optional list<i32> intAttributeList,
    4: optional list<i64> longAttributeList,
    5: optional list<double> doubleAttributeList,
    6: optional list<bool> boolAttributeList,
    7: optional list<string> stringAttributeList,
    8: optional map<i32, map<string, string>> arbitraryDataMapMap
}
