// Builds edXML packages with the official EdXML102 library (EdXML102-0.0.3.jar), the way its
// own examples do (SDKVXP_Example's EdXMLBuild.createEdoc_new and create_status), for
// tests/adapters/test_edxml102.py: documents with EdXmlBuilder and statuses with StatusXmlBuilder,
// each with the library's placeholder Signature or without one.
//
//   java EdXml102Build SPEC.json OUTDIR/
//
// SPEC.json is a JSON array; each entry builds one package:
//   {"name":N,"kind":"document","from":CODE,"to":[CODE...],"documentId":ID,
//    "code":[NUMBER,NOTATION],"attachment":PATH,"signature":true|false}
//   {"name":N,"kind":"status","from":CODE,"responseFor":{"organId":CODE,"code":NOTATION,
//    "documentId":ID},"statusCode":"03","signature":true|false}
// One JSON line per package goes to stdout: {"name":N,"path":FILE,"hash":H} or
// {"name":N,"exception":{...}}. Whatever the library prints goes to stderr.
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.vnpt.xml.base.Content;
import com.vnpt.xml.base.attachment.Attachment;
import com.vnpt.xml.base.header.Bussiness;
import com.vnpt.xml.base.header.Header;
import com.vnpt.xml.base.header.KeyInfo;
import com.vnpt.xml.base.header.Organization;
import com.vnpt.xml.base.header.ResponseFor;
import com.vnpt.xml.base.header.SignReference;
import com.vnpt.xml.base.header.Signature;
import com.vnpt.xml.base.header.SignedInfo;
import com.vnpt.xml.base.header.SignerInfo;
import com.vnpt.xml.base.header.StaffInfo;
import com.vnpt.xml.base.header.TraceHeader;
import com.vnpt.xml.base.header.TraceHeaderList;
import com.vnpt.xml.base.header.X509Data;
import com.vnpt.xml.base.util.DateUtils;
import com.vnpt.xml.ed.Ed;
import com.vnpt.xml.ed.builder.EdXmlBuilder;
import com.vnpt.xml.ed.header.Code;
import com.vnpt.xml.ed.header.DocumentType;
import com.vnpt.xml.ed.header.MessageHeader;
import com.vnpt.xml.ed.header.OtherInfo;
import com.vnpt.xml.ed.header.PromulgationInfo;
import com.vnpt.xml.status.Status;
import com.vnpt.xml.status.builder.StatusXmlBuilder;
import com.vnpt.xml.status.header.MessageStatus;
import java.io.File;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.text.SimpleDateFormat;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;

public class EdXml102Build {
    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), true, "UTF-8");
        System.setOut(System.err);  // the library's own printing stays out of the answers
        JsonArray spec = new JsonParser().parse(new String(
                Files.readAllBytes(Paths.get(args[0])), StandardCharsets.UTF_8)).getAsJsonArray();
        String outDir = args[1].endsWith("/") ? args[1] : args[1] + "/";
        new File(outDir).mkdirs();
        for (JsonElement e : spec) {
            JsonObject p = e.getAsJsonObject();
            JsonObject reply = new JsonObject();
            reply.addProperty("name", p.get("name").getAsString());
            try {
                String dir = outDir + p.get("name").getAsString() + "/";
                new File(dir).mkdirs();
                Content content = "status".equals(p.get("kind").getAsString())
                        ? status(p, dir) : document(p, dir);
                reply.addProperty("path", content.getContent().getAbsolutePath());
                reply.addProperty("hash", content.getHashCode());
            } catch (Throwable t) {
                JsonObject ex = new JsonObject();
                ex.addProperty("class", t.getClass().getName());
                ex.addProperty("message", String.valueOf(t.getMessage()));
                reply.add("exception", ex);
                t.printStackTrace();
            }
            out.println(reply.toString());
        }
    }

    static Organization organization(String code, String name) {
        return new Organization(code, name, name, "Số 1 Hoàng Hoa Thám, Quận Ba Đình, Hà Nội",
                "vanthu@gov.vn", "8043100", "048989898789", "gov.vn");
    }

    static Date today() {
        return DateUtils.parse(new SimpleDateFormat("yyyy/MM/dd").format(new Date()));
    }

    /** The library's placeholder, as its examples write it (edXML namespace, not ds:). */
    static Signature placeholder() {
        SignReference reference = new SignReference("", "http://www.w3.org/2000/09/xmldsig#sha1",
                "FwgIqsSYJshUS2+wlOM61L+q7Aw=");
        reference.addToTransform("http://www.w3.org/2000/09/xmldsig#enveloped-signature");
        reference.addToTransform("http://www.w3.org/TR/xml-exc-c14n#");
        List<SignReference> references = new ArrayList<SignReference>();
        references.add(reference);
        SignedInfo signedInfo = new SignedInfo("http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
                "http://www.w3.org/2000/09/xmldsig#rsa-sha1", references);
        return new Signature(signedInfo, "GbVb8n9+qFxz466Ag0sbpVdLPs2R0+9JBekp12UyarAZjoG0W/kPZZJ1"
                + "auRZDcNcrSwzgkQMpqrjwxcy3ejzbY/ON5USUPgoYNYM8p4wsgQpEAeQaZ+EWLkkEBxYjb+iWEiAjYu"
                + "JI7gtJoOyENcOK4fO050SXp2ctOc32LJMA5eEI6Hw7sxhc2LAgcPiynJHdDW2Z+eut6QZiUsbIF9+S3T"
                + "6u/tfLImw39dgSlCxupwLPHepxuiLOqyd08HeJGCZufg9WqRBVyLFM76uCIaPRP5wwAdx72GVjPcG2kh"
                + "+2jjrt7fqtJOufJzCObtQgPgBqIvDiZCGoOM41OQMiqtF3w==",
                new KeyInfo(new X509Data("CN=user05", "MIIFqTCCBJG")));
    }

    /** EdXMLBuild.createEdoc_new of the library's example, with this test's codes. */
    static Content document(JsonObject p, String dir) throws Exception {
        Ed ed = new Ed();
        JsonArray codeParts = p.getAsJsonArray("code");
        Code code = new Code(codeParts.get(0).getAsString(), codeParts.get(1).getAsString());
        String fromCode = p.get("from").getAsString();
        Organization from = organization(fromCode, "Văn phòng Chính phủ");
        List<Organization> toes = new ArrayList<Organization>();
        for (JsonElement to : p.getAsJsonArray("to")) toes.add(organization(to.getAsString(), "UBND Tỉnh Nghệ An"));
        PromulgationInfo promulgationInfo = new PromulgationInfo("Hà Nội", today());
        DocumentType docType = new DocumentType(1, "Công văn");
        SignerInfo signerInfo = new SignerInfo("TL. BO TRUONG",
                "Cuc truong cuc ung dung cong nghe thong tin", "Nguyen Thanh Phuc");
        String subject = "V/v kết nối, liên thông phần mềm quản lý văn bản";
        MessageHeader header = new MessageHeader(from, toes, code, promulgationInfo, docType,
                subject, subject, null, signerInfo, new Date(), null, null);
        header.addToPlace("Cac bo va co quan ngang bo");
        header.addToPlace("Uy ban nhan dan cac tinh, TP");
        header.setSteeringType(1);
        OtherInfo otherInfo = new OtherInfo();
        otherInfo.setPriority(0);
        otherInfo.setPromulgationAmount(2);
        otherInfo.setPageAmount(22);
        otherInfo.setSphereOfPromulgation("Liên thông văn bản quốc gia");
        List<String> appendixes = new ArrayList<String>();
        appendixes.add("Công văn về việc kết nối, liên thông phần mềm quản lý văn bản");
        otherInfo.setTyperNotation("TVC");
        otherInfo.setAppendixes(appendixes);
        header.setOtherInfo(otherInfo);
        header.setDocumentId(p.get("documentId").getAsString());

        TraceHeaderList trList = new TraceHeaderList();
        TraceHeader trace = new TraceHeader();
        trace.setOrganId(fromCode);
        trace.setTimestamp(today());
        trList.addTraceHeader(trace);
        StaffInfo staffInfo = new StaffInfo();
        staffInfo.setDepartment("Văn thư văn phòng");
        staffInfo.setStaff("Nguyễn Thị Ngọc Trâm");
        staffInfo.setEmail("vanthuvanphong@gov.vn");
        staffInfo.setMobile("84912000001");
        Bussiness bussiness = new Bussiness();
        bussiness.setBussinessDocReason("Văn bản điện tử mới");
        bussiness.setBussinessDocType("0");
        bussiness.setPaper("0");
        bussiness.addStaffInfo(staffInfo);
        trList.setBussiness(bussiness);

        boolean signed = p.get("signature").getAsBoolean();
        ed.setHeader(signed ? new Header(header, trList, placeholder()) : new Header(header, trList));
        if (p.has("attachment")) {
            File file = new File(p.get("attachment").getAsString());
            ed.addAttachment(new Attachment("209", file.getName(), "Giấy mời", file));
        }
        return EdXmlBuilder.build(ed, dir);
    }

    /** EdXMLBuild.create_status of the library's example, with this test's codes. */
    static Content status(JsonObject p, String dir) throws Exception {
        Header header = new Header();
        MessageStatus msgStatus = new MessageStatus();
        JsonObject rf = p.getAsJsonObject("responseFor");
        msgStatus.setResponseFor(new ResponseFor(rf.get("organId").getAsString(),
                rf.get("code").getAsString(), today(), rf.get("documentId").getAsString()));
        msgStatus.setFrom(organization(p.get("from").getAsString(), "UBND Tỉnh Nghệ An"));
        msgStatus.setStatusCode(p.get("statusCode").getAsString());
        msgStatus.setDescription("Văn thư - Phòng Văn thư - Lưu trữ: Đã tiếp nhận");
        msgStatus.setTimestamp(new Date());
        StaffInfo staffInfo = new StaffInfo();
        staffInfo.setDepartment("Văn thư văn phòng");
        staffInfo.setStaff("Nguyễn Thị Ngọc Trâm");
        staffInfo.setEmail("vanthuvanphong@gov.vn");
        staffInfo.setMobile("84912000001");
        msgStatus.setStaffInfo(staffInfo);
        header.setMessageHeader(msgStatus);
        if (p.get("signature").getAsBoolean()) header.setSignature(placeholder());
        return StatusXmlBuilder.build(new Status(header), dir);
    }
}
